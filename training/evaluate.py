"""Evaluation through the exported ONNX model, stepped exactly as the scorer steps it.

:func:`replay` runs every stream through :func:`pipeline.engine.stepper.advance` (batched
across streams), so validation metrics, anomaly calibration and the champion /
challenger comparison all measure the artifact that will serve, with the
scorer's own normaliser and anomaly code.

Forecast errors are reported scale-free: MAE in sensor units divided by the
stream's standard deviation over its validation part, averaged over streams,
per horizon, next to the persistence baseline (the last value repeated) on the
same steps. ``skill = 1 - MAE_model / MAE_persistence`` (> 0 beats persistence).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.engine import drift
from pipeline.engine.anomaly import AnomalyParams
from pipeline.engine.covariates import covariates
from pipeline.engine.inference import StepSession
from pipeline.engine.interval import Band, IntervalParams
from pipeline.engine.registry import ModelMeta
from pipeline.engine.state import StateStore
from pipeline.engine.stepper import advance
from training.data import Series

__all__ = [
    "Replayed",
    "alarm_rate",
    "calibrate",
    "drift_references",
    "forecast_metrics",
    "input_hist",
    "live_mae",
    "plot_forecasts",
    "replay",
]

F64 = npt.NDArray[np.float64]


@dataclasses.dataclass
class Replayed:
    """Per stream: ``forecast [T, horizon, F]`` made at each step, its interval ``lo``,
    ``hi`` (same shape; NaN for a model without a scale head), ``score [T]``, ``error [T]``."""

    name: str
    values: F64
    forecast: F64
    score: F64
    error: F64
    lo: F64
    hi: F64
    abs_error: F64  # [T] the scorer's live error measure (stepper.Stepped.abs_error)
    inputs: F64  # [T, F] the normalised values the network saw (stepper.Stepped.inputs)
    reason: npt.NDArray[np.int64]  # [T] the channel that scored highest (stepper.REASONS)


def replay(
    meta: ModelMeta,
    streams: list[Series],
    anomaly: AnomalyParams | None = None,
    threads: int = 1,
    interval: IntervalParams = IntervalParams(),  # noqa: B008 (frozen, immutable)
    seasonal: bool = True,
) -> list[Replayed]:
    """Step all streams through the model from a fresh state, batched across streams
    (``seasonal=False``: without the streams' daily profiles, the model's forecast alone)."""
    session = StepSession(meta, threads=threads)
    anom = anomaly or meta.anomaly
    band = None if meta.distribution is None else Band.of(meta.distribution, interval)
    store = StateStore.for_model(meta, capacity=len(streams), ring=0, anomaly=anom)
    slots = store.slots_for([f"{i}:{s.name}" for i, s in enumerate(streams)], now=0.0)
    lengths = np.asarray([len(s.ts) for s in streams])
    out = [
        Replayed(
            s.name,
            s.values,
            np.zeros((len(s.ts), meta.horizon, len(meta.features))),
            np.full(len(s.ts), np.nan),
            np.full(len(s.ts), np.nan),
            np.full((len(s.ts), meta.horizon, len(meta.features)), np.nan),
            np.full((len(s.ts), meta.horizon, len(meta.features)), np.nan),
            np.full(len(s.ts), np.nan),
            np.full((len(s.ts), len(meta.features)), np.nan),
            np.zeros(len(s.ts), np.int64),
        )
        for s in streams
    ]
    for t in range(int(lengths.max())):
        active = np.nonzero(lengths > t)[0]
        st = store.gather(slots[active])
        x = np.stack([streams[i].values[t] for i in active.tolist()])
        cov = None
        ts = np.asarray([streams[i].ts[t] for i in active.tolist()])
        prev = np.asarray([streams[i].ts[t - 1] if t else -np.inf for i in active.tolist()])
        if meta.covariates:
            cov = covariates(ts, prev, meta.covariates)
        when = (ts, prev) if seasonal else (None, None)
        stepped = advance(session, meta.normalisation, anom, st, x, cov, band, *when)
        score, err = stepped.score, stepped.error
        store.scatter(slots[active], st)
        lo, hi = (None, None) if band is None else band.bounds(st.fc, st.fs, st.qlog)
        for j, i in enumerate(active.tolist()):
            out[i].forecast[t] = st.fc[j]
            if lo is not None and hi is not None:
                out[i].lo[t], out[i].hi[t] = lo[j], hi[j]
            out[i].score[t] = score[j]
            out[i].error[t] = err[j]
            out[i].abs_error[t] = stepped.abs_error[j]
            out[i].inputs[t] = stepped.inputs[j]
            out[i].reason[t] = stepped.reason[j]
    return out


def live_mae(replayed: list[Replayed], fraction: float, warmup: int = 48) -> float:
    """The error the scorer's live evidence reports (pipeline.engine.live), over each
    stream's last ``fraction`` and its warm steps only: a model's reference for drift."""
    errors = [r.abs_error[max(int(len(r.values) * (1.0 - fraction)), warmup) :] for r in replayed]
    e = np.concatenate(errors) if errors else np.empty(0)
    e = e[np.isfinite(e)]
    return float(e.mean()) if len(e) else float("nan")


def input_hist(replayed: list[Replayed], fraction: float, warmup: int = 48) -> list[float]:
    """The fractions of the network's inputs per bin of :data:`pipeline.engine.drift.EDGES`
    over each stream's last ``fraction`` and its warm steps (as :func:`live_mae`): the
    model's reference for input drift."""
    parts = [r.inputs[max(int(len(r.values) * (1.0 - fraction)), warmup) :] for r in replayed]
    return drift.fractions(drift.counts(np.concatenate(parts) if parts else np.empty(0)))


def drift_references(replayed: list[Replayed], fraction: float) -> dict[str, Any]:
    """What the scorer compares live traffic with (model.json ``validation``): its live
    error measure (``live_mae``) and its inputs' histogram (``input_hist``)."""
    return {"live_mae": live_mae(replayed, fraction), "input_hist": input_hist(replayed, fraction)}


def forecast_metrics(replayed: list[Replayed], val_fraction: float, horizon: int) -> dict[str, Any]:
    """Scale-free MAE per horizon on each stream's validation part, vs persistence."""
    model = np.zeros(horizon)
    persist = np.zeros(horizon)
    counts = np.zeros(horizon)
    per_stream = {}
    for r in replayed:
        T = len(r.values)
        split = int(T * (1.0 - val_fraction))
        scale = float(np.std(r.values[split:])) or 1.0
        s_model, s_persist = [], []
        for k in range(horizon):
            t = np.arange(split, T - (k + 1))
            if not len(t):
                continue
            actual = r.values[t + k + 1]
            m = np.abs(r.forecast[t, k] - actual).mean() / scale
            p = np.abs(r.values[t] - actual).mean() / scale
            model[k] += m * len(t)
            persist[k] += p * len(t)
            counts[k] += len(t)
            s_model.append(m)
            s_persist.append(p)
        if s_model:
            per_stream[r.name] = {
                "mae_h1": float(s_model[0]),
                "persistence_mae_h1": float(s_persist[0]),
                "skill_h1": float(1 - s_model[0] / s_persist[0]) if s_persist[0] > 0 else 0.0,
            }
    counts = np.maximum(counts, 1)
    mae = model / counts
    pmae = persist / counts
    return {
        "mae": [float(v) for v in mae],
        "persistence_mae": [float(v) for v in pmae],
        "skill": [float(1 - m / p) if p > 0 else 0.0 for m, p in zip(mae, pmae, strict=True)],
        "mean_mae": float(mae.mean()),
        "units": "MAE / std of the stream's validation part, mean over streams",
        "per_stream": per_stream,
    }


def calibrate(replayed: list[Replayed], val_fraction: float, base: AnomalyParams) -> AnomalyParams:
    """Priors of the error distribution from the training parts (median across streams,
    robust to a few wild streams), without each stream's first ``min_history`` errors,
    which the scorer does not learn from either."""
    means, stds = [], []
    for r in replayed:
        split = int(len(r.values) * (1.0 - val_fraction))
        e = r.error[base.min_history : split]
        e = e[np.isfinite(e)]
        if len(e) > 10:
            means.append(float(np.mean(e)))
            stds.append(float(np.std(e)))
    if not means:
        return base
    return dataclasses.replace(
        base,
        prior_mean=float(np.median(means)),
        prior_std=max(float(np.median(stds)), base.min_sigma),
    )


def repeat_rate(values: list[F64]) -> float:
    """Median over streams of how often a value repeats the previous one exactly."""
    rates = [float(np.mean(np.all(v[1:] == v[:-1], axis=1))) for v in values if len(v) > 1]
    return float(np.median(rates)) if rates else 0.1


def alarm_rate(replayed: list[Replayed], val_fraction: float, threshold: float) -> float:
    """Fraction of validation steps whose score reaches ``threshold``.

    The threshold itself is not fitted to the training data: the score is already
    adapted per stream (its own error spread, tail calibration, range), and training
    data may hold anomalies of its own (generated feeds do), which a quantile would
    take for normal. 0.6 (a tail of 3e-8) was chosen on NAB and the generated feeds
    (docs/quality.md); this rate, stored in model.json, shows how often it fires on the
    model's own validation data.
    """
    scores = np.concatenate([r.score[int(len(r.values) * (1 - val_fraction)) :] for r in replayed])
    scores = scores[np.isfinite(scores)]
    return float(np.mean(scores >= threshold)) if len(scores) else 0.0


def plot_forecasts(
    replayed: list[Replayed], val_fraction: float, path: Path, streams: int = 4, window: int = 400
) -> Path:
    """PNG: actual vs one-step forecast and the anomaly score on a few validation streams."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = replayed[:: max(1, len(replayed) // streams)][:streams]
    fig, axes = plt.subplots(len(chosen), 1, figsize=(11, 2.6 * len(chosen)), squeeze=False)
    for ax, r in zip(axes[:, 0], chosen, strict=True):
        T = len(r.values)
        start = max(int(T * (1 - val_fraction)), T - window)
        t = np.arange(start, T)
        ax.plot(t, r.values[t, 0], lw=1.0, label="actual", color="black")
        ax.plot(t[1:], r.forecast[t[:-1], 0, 0], lw=1.0, label="forecast (t+1)", color="tab:blue")
        ax2 = ax.twinx()
        ax2.fill_between(t, 0, r.score[t], color="tab:red", alpha=0.2, label="anomaly score")
        ax2.set_ylim(0, 1)
        ax.set_title(r.name, fontsize=9)
        ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
