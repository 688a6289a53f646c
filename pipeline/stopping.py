"""A stop request (SIGTERM) that arrives while a process is still starting up.

A scorer spends its first seconds importing onnxruntime and loading its models before
it installs its own SIGTERM handler (:meth:`pipeline.scorer.Scorer.run`); a SIGTERM in
that window (a rolling restart, an orchestrator scaling down) used to kill it with the
signal's status instead of a clean exit. The command line holds such a request from its
first line (:func:`hold`); the scorer takes it over (:func:`requested`) and stops before
it polls, exit code 0. Every other command gets the default handling back once it is
known (:func:`release`), and a request that came meanwhile terminates it then.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType

_REQUESTED = threading.Event()


def _note(_signum: int, _frame: FrameType | None) -> None:
    _REQUESTED.set()


def hold() -> None:
    """From now on a SIGTERM is noted, not acted on (main thread only: elsewhere a
    signal handler cannot be installed, and the default stays)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _note)


def release() -> None:
    """SIGTERM's default handling again; a request noted meanwhile terminates now."""
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if _REQUESTED.is_set():
        os.kill(os.getpid(), signal.SIGTERM)


def requested() -> bool:
    """Whether a SIGTERM was noted while held."""
    return _REQUESTED.is_set()
