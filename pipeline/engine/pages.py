"""Huge pages for the state arrays, asked for after their memory is in use, not before.

numpy advises the kernel to back every array of 4 MB or more with transparent huge pages
(``madvise(MADV_HUGEPAGE)`` at allocation). Where the kernel's ``transparent_hugepage/
defrag`` is ``madvise`` (Debian's default), the first write to such an array then
compacts memory synchronously to find each 2 MB page: on the 2-vCPU VMs here, 2-3 s to
fault in 300 MB (a 100k-stream store) against 0.16-0.18 s in 4 KB pages
(docs/benchmarks.md "Huge pages after the first touch"). That cost lands in the poll
loop: a restore's room for every stream, a store that doubles as streams arrive.

So the store allocates its arrays without numpy's advice (:func:`without_advice`), lets
their first writes fault in 4 KB pages, and then advises them itself (:func:`advise`):
the kernel's ``khugepaged`` thread collapses them into huge pages in the background
(16 MB every 10 s at its default pace), and the steady-state step gets the huge pages'
fewer TLB misses back without waiting for them. Linux only; elsewhere (or on a numpy
without the switch) both do nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import sys
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["advise", "without_advice", "zeros"]

# numpy's own size limit for its advice: smaller arrays are not worth a huge page.
MIN_BYTES = 4 << 20
# Arrays from this size on get pages of their own from the kernel (:func:`zeros`).
MAPPED_BYTES = 64 << 10
_MADV_HUGEPAGE = 14
_PAGE = 4096


def _switch() -> Any:
    core = getattr(np, "_core", None)
    multiarray = getattr(core, "multiarray", None)
    return getattr(multiarray, "_set_madvise_hugepage", None)


@contextlib.contextmanager
def without_advice() -> Iterator[None]:
    """Arrays allocated inside are not advised to use huge pages (numpy's switch, which is
    process-wide: only for allocations the caller makes while nothing else allocates)."""
    switch = _switch()
    if switch is None:
        yield
        return
    before = switch(False)
    try:
        yield
    finally:
        switch(before)


def _madvise() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_MADVISE = _madvise()


def advise(arrays: Iterable[npt.NDArray[Any]]) -> int:
    """Advise huge pages for the whole pages inside each array of at least ``MIN_BYTES``,
    as numpy would have at allocation; returns the bytes advised (0 where not possible).
    A refusal (an old kernel, THP off) is no error: the arrays keep their pages."""
    if _MADVISE is None:
        return 0
    done = 0
    for arr in arrays:
        if arr.nbytes < MIN_BYTES or not arr.flags.c_contiguous:
            continue
        start = -(-arr.ctypes.data // _PAGE) * _PAGE
        end = (arr.ctypes.data + arr.nbytes) // _PAGE * _PAGE
        if end > start and _MADVISE(start, end - start, _MADV_HUGEPAGE) == 0:
            done += end - start
    return done


def zeros(shape: tuple[int, ...], dtype: type | np.dtype[Any]) -> npt.NDArray[Any]:
    """A zeroed array whose memory is resident only where it is written: from
    ``MAPPED_BYTES`` on, an anonymous mapping of its own (the kernel gives zero pages on
    first touch). ``np.zeros`` is not that once the process has freed a large array:
    glibc's malloc then raises its mmap threshold (up to 32 MB) and serves such arrays
    from the heap, zeroing reused memory, so all of a store's room for new streams was
    resident (half of it unused just after the store doubles)."""
    dt = np.dtype(dtype)
    size = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    if size < MAPPED_BYTES:
        return np.zeros(shape, dt)
    out: npt.NDArray[Any] = np.frombuffer(mmap.mmap(-1, size), dt).reshape(shape)
    return out
