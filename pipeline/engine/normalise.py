"""The online per-stream normaliser, shared by training and scoring.

Training and serving must normalise identically, or the model sees a different
input distribution live than it was fitted on. Both therefore use these functions,
which are causal: the statistics at step t use only x[0..t].

Per stream and feature the state is ``(n, mean, var)``. One update with value x::

    a    = max(1 / n, alpha)         # cumulative average first, then exponential
    d    = x - mean
    mean = mean + a * d
    var  = (1 - a) * (var + a * d * d)

The model input is ``clip((x - mean) / std, -clip, clip)`` with the statistics
*after* the update, and the forecast targets for steps t+1..t+horizon are
normalised with the same step-t statistics, so the scorer can turn a forecast
back into sensor units with the statistics it holds at step t.
``std = max(sqrt(var), min_std_abs + min_std_rel * |mean|)`` keeps a stuck sensor
from dividing by zero.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["NormaliserParams", "floor_of", "normalise_series", "std_of", "update"]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


@dataclasses.dataclass(frozen=True, kw_only=True)
class NormaliserParams:
    """Stored in every model.json under ``normalisation``."""

    alpha: float = 1.0 / 2000.0
    min_std_abs: float = 1e-6
    min_std_rel: float = 1e-3
    clip: float = 10.0

    def to_json(self) -> dict[str, Any]:
        return {"scheme": "ewm-zscore", **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NormaliserParams:
        return cls(**{k: v for k, v in data.items() if k != "scheme"})


def floor_of(p: NormaliserParams, mean: F64) -> F64:
    """The least spread a stream is taken to have: its resolution, as it were."""
    out: F64 = p.min_std_abs + p.min_std_rel * np.abs(mean)
    return out


def std_of(p: NormaliserParams, mean: F64, var: F64) -> F64:
    """The standard deviation used for scaling, with the stuck-sensor floor."""
    return np.maximum(np.sqrt(np.maximum(var, 0.0)), floor_of(p, mean))


def update(p: NormaliserParams, n: F64, mean: F64, var: F64, x: F64) -> tuple[F64, F64, F64]:
    """One step for a batch of streams: ``n [B]``, ``mean, var, x [B, F]``; returns new arrays."""
    n = n + 1.0
    a = np.maximum(1.0 / n, p.alpha)[:, None]
    d = x - mean
    mean = mean + a * d
    var = (1.0 - a) * (var + a * d * d)
    return n, mean, var


def normalise_series(p: NormaliserParams, values: F64) -> tuple[F32, F64, F64]:
    """Run the normaliser over one stream ``values [T, F]``.

    Returns ``(z [T, F] float32, mean [T, F], std [T, F])`` where row t holds the
    model input and the statistics after step t.
    """
    T, F = values.shape
    z = np.empty((T, F), np.float32)
    means = np.empty((T, F))
    stds = np.empty((T, F))
    n = np.zeros(1)
    mean = np.zeros((1, F))
    var = np.zeros((1, F))
    for t in range(T):
        n, mean, var = update(p, n, mean, var, values[t : t + 1])
        std = std_of(p, mean, var)
        means[t] = mean[0]
        stds[t] = std[0]
        z[t] = np.clip((values[t] - mean[0]) / std[0], -p.clip, p.clip)
    return z, means, stds
