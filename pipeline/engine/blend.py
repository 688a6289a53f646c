"""Per stream, how much of the seasonal forecast to mix into the model's: learnt online.

Two forecasters see every stream: the model (one network for all streams, with the
stream's gain, :mod:`.gain`) and the stream's own daily profile (:mod:`.season`). Neither
wins everywhere: the profile is exact on a sensor that repeats its day and useless on a
random walk, the model the other way round. Each stream therefore keeps, for each of the
mixes ``w`` in :data:`WEIGHTS`, the exponentially weighted mean absolute one-step error of
``(1 - w) · model + w · seasonal`` (in units of the stream's spread, averaged over
features), and publishes the mix with the smallest, at every horizon::

    w* = argmin_w E|x - ((1 - w) · model + w · seasonal)|

``w = 0`` is the model alone (and wins ties). The served scale (intervals, the forecast
surprise) is mixed the same way, the profile's share taken by its recent mean absolute
error (the w = 1 mix's loss). Absolute errors, because forecasts are judged
by them and because one spike does not decide them (a minimum-variance weight on squared
errors chased the spikes of bursty streams). Until :data:`MIN_EVIDENCE` updates the model
stands alone; a model swap keeps the evidence (it follows the new model within about
``1 / RATE`` steps; starting afresh served the new model alone for ``MIN_EVIDENCE`` steps
after every refresh).

Constants: the memory (``RATE``, about 100 steps) and the evidence threshold are the
gain's; five mixes and absolute errors were compared with minimum-variance weights on the
generated corpus (docs/quality.md).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from pipeline.engine import finite

__all__ = ["MIN_EVIDENCE", "MOMENTS", "RATE", "WEIGHTS", "learn", "weight_of"]

F64 = npt.NDArray[np.float64]
RATE = 0.01
MIN_EVIDENCE = 50.0
WEIGHTS = np.linspace(0.0, 1.0, 5)
MOMENTS = len(WEIGHTS) + 1  # a loss per mix, and the updates seen


def learn(
    moments: F64,
    x: F64,
    model_fc: F64,
    seasonal_fc: F64,
    std: F64,
    ok: npt.NDArray[np.bool_],
) -> F64:
    """One update where ``ok`` of ``moments [B, MOMENTS]`` (each mix's mean absolute error,
    then the updates seen); ``x``, the forecasts and ``std`` are ``[B, F]``."""
    m = (x - model_fc) / std
    s = (x - seasonal_fc) / std
    good = ok & np.isfinite(m).all(axis=1) & np.isfinite(s).all(axis=1)
    if not good.any():
        return moments
    # The error of mix w is (1 - w)·m + w·s, per feature; its mean absolute value over them.
    mixed = (1.0 - WEIGHTS)[None, :, None] * m[:, None, :] + WEIGHTS[None, :, None] * s[:, None, :]
    loss = np.mean(np.abs(mixed), axis=2)
    out = moments.copy()
    g = good[:, None]
    out[:, :-1] = np.where(
        g, moments[:, :-1] + RATE * (finite.nan_to_num(loss) - moments[:, :-1]), out[:, :-1]
    )
    out[:, -1] = np.where(good, moments[:, -1] + 1.0, moments[:, -1])
    return out


def weight_of(moments: F64) -> F64:
    """The seasonal forecast's weight per stream, in [0, 1]."""
    best = np.argmin(moments[:, :-1], axis=1)
    out: F64 = np.where(moments[:, -1] >= MIN_EVIDENCE, WEIGHTS[best], 0.0)
    return out
