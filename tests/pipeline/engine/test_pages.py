"""pipeline.engine.pages: numpy's huge-page advice off for an allocation, ours after it."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from pipeline.engine import pages


def test_without_advice_turns_numpys_switch_off_and_back_even_on_an_error() -> None:
    switch = pages._switch()
    if switch is None:
        pytest.skip("this numpy has no huge-page switch")
    before = switch(True)
    try:
        with pytest.raises(RuntimeError), pages.without_advice():
            assert switch(False) is False  # it was off inside (switch returns the old value)
            raise RuntimeError("boom")
        assert switch(True) is True  # ... and on again after
    finally:
        switch(before)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise is Linux's")
def test_advise_covers_the_whole_pages_of_large_arrays_only() -> None:
    big = np.zeros(3 * pages.MIN_BYTES // 8 + 123)
    small = np.zeros(pages.MIN_BYTES // 8 - 1)
    done = pages.advise([big, small, big[::2]])  # a strided view is skipped
    assert 0 < done <= big.nbytes and done % pages._PAGE == 0
    assert big.nbytes - done < 2 * pages._PAGE
    assert pages.advise([small]) == 0


def _resident() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
def test_zeros_are_resident_only_where_written_even_after_large_frees() -> None:
    """A store's room for new streams costs no memory until they come: once the process
    has freed large arrays (glibc then serves such sizes from its heap, where memory
    freed before is zeroed, so resident, at once), ``pages.zeros`` arrays are still
    resident only where they are written; small ones are plain numpy arrays."""
    np.ones(8 << 20, np.uint8)  # mapped, and freed: glibc's threshold rises to 8 MB
    freed = [np.ones(4 << 20, np.uint8) for _ in range(8)]  # now from the heap
    pinned = np.ones(1024, np.uint8)  # above them, so their memory stays with the heap
    del freed  # a store's old arrays, freed as it grows
    before = _resident()
    arrays = [pages.zeros((512, 1024), np.float64) for _ in range(8)]  # 4 MB each
    assert all(a.shape == (512, 1024) and a.flags.writeable for a in arrays)
    assert _resident() - before < 4 << 20
    for a in arrays:
        a[:256] = 1.0  # half of each
    assert 14 << 20 < _resident() - before < 20 << 20
    assert all(float(a.sum()) == 256 * 1024 for a in arrays)  # (reading maps the rest)
    small = pages.zeros((10,), np.int64)
    assert small.base is None and not small.any()  # a plain numpy array
    assert pinned.all()
