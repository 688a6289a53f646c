"""Input drift: has the distribution of what the network sees moved from what it was
validated on?

The network's input is each value normalised by its stream's own slow statistics
(:mod:`pipeline.engine.normalise`, about 2,000 steps of memory), so on a stream that
behaves as in training it is centred with unit spread whatever the sensor's units. A
regime the model has not seen shows there before the normaliser has caught up: a level
shift puts the inputs off centre, noisier or spikier data widens their tails, a frozen
sensor piles them up in one bin.

The measure is the **population stability index** over fixed bins of the normalised
value, ``PSI = sum((p - q) * ln(p / q))`` for the live fractions ``p`` and the
reference fractions ``q`` (each floored at ``FLOOR`` so an empty bin does not give an
infinite index). The usual reading: below 0.1 stable, 0.1 to 0.25 a moderate shift,
above 0.25 a major one. With 2,000 live values in 12 bins, sampling noise alone gives
about 0.005.

The reference is recorded at training time (``validation.input_hist`` in model.json:
the fractions of the validation steps' inputs per bin of :data:`EDGES`, over whole days
of many streams). Live inputs are therefore compared over one whole day of event time
(:class:`DayOfInputs`): a shorter window sees the streams at one time of day (at night
they all sit low) and differs from any all-day reference without anything having
changed. Nor is the first day of a deployment compared: while a stream is young its
normaliser follows it closely (a cumulative mean), and its inputs are narrower than a
mature stream's.

What the index reads on data that did not change (``benchmarks/input_drift.py``): the
streams a deployment serves are never quite the population the model was validated on,
so a day of normal generated feeds scores 0.1 to 0.4 against the shipped model's
corpus-wide reference, where the folklore threshold of 0.25 would alarm every day; a
regime the network never saw scores 2 and more. The alert (StatecastInputDrift) is set
at 1.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["DAY", "EDGES", "FLOOR", "DayOfInputs", "counts", "fractions", "psi"]

# Bin edges in units of the stream's spread: finer near the centre, where most values are.
EDGES: tuple[float, ...] = (-3.0, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0)
BINS = len(EDGES) + 1
FLOOR = 1e-4
DAY = 86_400.0


def counts(z: npt.NDArray[np.floating]) -> npt.NDArray[np.int64]:
    """How many finite values of ``z`` (any shape) fall into each bin of :data:`EDGES`."""
    flat = np.asarray(z, np.float64).ravel()
    flat = flat[np.isfinite(flat)]
    out: npt.NDArray[np.int64] = np.bincount(
        np.searchsorted(np.asarray(EDGES), flat, side="right"), minlength=BINS
    ).astype(np.int64)
    return out


def fractions(c: npt.NDArray[np.int64]) -> list[float]:
    """Counts as fractions (the form model.json keeps); all zeros for no values."""
    total = int(c.sum())
    return [float(v) / total if total else 0.0 for v in c.tolist()]


def psi(reference: Sequence[float], live: npt.NDArray[np.int64]) -> float:
    """The population stability index of ``live`` counts against ``reference``
    fractions (NaN when either is empty or they do not have :data:`BINS` bins)."""
    total = int(live.sum())
    if total == 0 or len(reference) != BINS or len(live) != BINS or sum(reference) <= 0:
        return math.nan
    q = np.maximum(np.asarray(reference, np.float64) / sum(reference), FLOOR)
    p = np.maximum(live.astype(np.float64) / total, FLOOR)
    return float(np.sum((p - q) * np.log(p / q)))


class DayOfInputs:
    """Counts of a model's inputs over the last day of event time, kept as blocks (one per
    :meth:`add`, each stamped with the latest event time it holds)."""

    def __init__(self, span_s: float = DAY, after_s: float = DAY) -> None:
        self.span_s = span_s
        self.after_s = after_s  # nothing to compare until this long after the first event
        self.blocks: deque[tuple[float, npt.NDArray[np.int64]]] = deque()
        self.first_ts = math.inf
        self.last_ts = -math.inf

    def saw(self, first_ts: float) -> None:
        """Events from ``first_ts`` on were seen (the day's clock starts at the first)."""
        self.first_ts = min(self.first_ts, first_ts)

    def add(self, last_ts: float, block: npt.NDArray[np.int64]) -> None:
        """A block of counts from events up to ``last_ts`` (all of them :meth:`saw`)."""
        self.last_ts = max(self.last_ts, last_ts)
        self.blocks.append((last_ts, block))
        while self.blocks and self.blocks[0][0] <= self.last_ts - self.span_s:
            self.blocks.popleft()

    def day(self) -> npt.NDArray[np.int64] | None:
        """The last day's counts, or None until a whole day after ``after_s`` was seen."""
        if self.last_ts - self.first_ts < self.after_s + self.span_s or not self.blocks:
            return None
        out: npt.NDArray[np.int64] = np.sum([b for _, b in self.blocks], axis=0)
        return out
