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
the fractions of the validation steps' inputs per bin of :data:`EDGES`); the scorer
compares each window of live inputs against it (``statecast_live_input_psi``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["EDGES", "FLOOR", "counts", "fractions", "psi"]

# Bin edges in units of the stream's spread: finer near the centre, where most values are.
EDGES: tuple[float, ...] = (-3.0, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0)
BINS = len(EDGES) + 1
FLOOR = 1e-4


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
