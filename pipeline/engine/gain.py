"""A per-stream gain on the model's predicted change: one model, fitted to each stream online.

The forecaster predicts, at every step, a change from the current value (its residual
head). One model serves every stream, and on a given stream it may over- or under-react:
predict swings that do not come (a noisy random walk, where "next = last" is hard to beat)
or damp ones that do. Each stream therefore keeps the least-squares gain ``k`` of the
actual one-step change ``d = x_t - x_(t-1)`` on the change the model predicted for it
``δ = forecast_(t-1) - x_(t-1)``, both in units of the stream's spread, exponentially
weighted at rate ``RATE``::

    k = clip(Σw δ·d / Σw δ², 0, MAX_GAIN)     (after MIN_EVIDENCE steps; 1 before)

and the published one-step forecast is ``x_t + k · (model forecast - x_t)``. Longer
horizons keep the model's own forecast: the gain is learnt on one-step changes, and
applied to all horizons it made the five-step forecast worse on NAB (0.848 vs 0.828).
``k = 1`` is the model as trained, ``k = 0`` persistence. The gain describes how this
model fits this stream: a model swap starts it afresh, learning from the swap's replay.

The constants are reasoned (a memory of about 100 steps, a gain that may amplify by half
at most), then checked on nab-dev across rates from 0.003 to 0.03 and caps of 1 and 1.5,
which move the one-step figure by less than 0.01 (`benchmarks/forecast.py --gain-rate`,
docs/quality.md).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from pipeline.engine import finite

__all__ = ["MAX_GAIN", "MIN_EVIDENCE", "RATE", "gain_of", "learn"]

F64 = npt.NDArray[np.float64]
RATE = 0.01
MAX_GAIN = 1.5
MIN_EVIDENCE = 50.0


def learn(
    gxy: F64, gxx: F64, gn: F64, delta: F64, change: F64, std: F64, ok: npt.NDArray[np.bool_]
) -> tuple[F64, F64, F64]:
    """One update of the gain's sums where ``ok``: ``delta``, ``change``, ``std [B, F]``."""
    dn, cn = delta / std, change / std
    xy = np.sum(dn * cn, axis=1)
    xx = np.sum(dn * dn, axis=1)
    good = ok & np.isfinite(xy) & np.isfinite(xx)
    gxy = np.where(good, (1.0 - RATE) * gxy + RATE * finite.nan_to_num(xy), gxy)
    gxx = np.where(good, (1.0 - RATE) * gxx + RATE * finite.nan_to_num(xx), gxx)
    gn = np.where(good, gn + 1.0, gn)
    return gxy, gxx, gn


def gain_of(gxy: F64, gxx: F64, gn: F64) -> F64:
    """The gain per stream: 1 until ``MIN_EVIDENCE`` updates, then the clipped ratio."""
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.clip(gxy / gxx, 0.0, MAX_GAIN)
    out: F64 = np.where((gn >= MIN_EVIDENCE) & (gxx > 0) & np.isfinite(k), k, 1.0)
    return out
