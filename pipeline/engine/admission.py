"""Which events may reach their streams: the screens that keep one producer's records
from poisoning a stream, and the cap on how many streams a served model holds.

Each function returns a mask over the events (True: let through) and appends a
:class:`~pipeline.engine.events.Rejection` with its reason for every event it stops.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

from pipeline.engine.events import Rejection
from pipeline.engine.state import StateStore

__all__ = ["DEFAULT_BOUNDS", "Bounds", "admit", "screen"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]


@dataclasses.dataclass(frozen=True)
class Bounds:
    max_abs_value: float = 1e12  # |value| beyond: `out_of_range`
    max_future_skew_s: float = 86_400.0  # ts later than now + this: `implausible_ts`
    max_streams: int = 2_000_000  # new streams beyond: `capacity`


DEFAULT_BOUNDS = Bounds()


def screen(
    bounds: Bounds, record_of: I64, ts: F64, x: F64, now: float, rejections: list[Rejection]
) -> Mask:
    """Values beyond the magnitude bound and implausible times never reach a stream;
    ``record_of[i]`` is event i's record position (for its rejection)."""
    bad_x = ~(np.abs(x) <= bounds.max_abs_value).all(axis=1)
    ahead = ts > now + bounds.max_future_skew_s
    bad_ts = ahead | (ts < 0)
    for i in np.nonzero(bad_x | bad_ts)[0].tolist():
        at = int(record_of[i])
        if ahead[i]:
            why = (
                f"ts {ts[i]:.0f} is more than {bounds.max_future_skew_s:.0f}s ahead of the "
                f"scorer's clock ({now:.0f}); raise max_future_skew_s if this is expected"
            )
            rejections.append(Rejection(at, "implausible_ts", why))
        elif bad_ts[i]:
            rejections.append(Rejection(at, "implausible_ts", f"ts {ts[i]:.0f} is before 1970"))
        else:
            why = f"a value beyond +-{bounds.max_abs_value:g} (max_abs_value)"
            rejections.append(Rejection(at, "out_of_range", why))
    return ~(bad_x | bad_ts)


def admit(
    bounds: Bounds,
    store: StateStore,
    model: str,
    record_of: I64,
    sids: list[str],
    ok: Mask,
    rejections: list[Rejection],
) -> Mask:
    """New streams only while fewer than ``max_streams`` are held (policy: refuse the
    newcomer to the dead-letter topic, keep the streams already held)."""
    admitted = np.ones(len(sids), np.bool_)
    room = bounds.max_streams - len(store)
    if len(sids) <= room:  # the common case: no per-event work
        return admitted
    fresh: set[str] = set()
    for i, sid in enumerate(sids):
        if not ok[i] or sid in store or sid in fresh:
            continue
        if len(fresh) < room:
            fresh.add(sid)
            continue
        admitted[i] = False
        why = f"the scorer holds max_streams={bounds.max_streams} streams of model {model}"
        rejections.append(Rejection(int(record_of[i]), "capacity", why))
    return admitted
