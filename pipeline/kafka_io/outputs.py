"""What the scorer writes: score records (output topic) and dead-letter records (DLQ).

Score record value (key = stream id)::

    {"stream_id", "ts" (as received), "value" | "values", "forecast" (horizon steps;
     per step a number, or an object of feature -> number for multivariate models),
     "forecast_lo", "forecast_hi" (the same shape: the central interval of the configured
     probability, default 90%; absent for a model without a scale head, null per step
     until a stream has one), "anomaly_score" in [0, 1), "is_anomaly", "threshold",
     "warm", "model", "model_version", "partition", "offset"}

and on a record flagged ``is_anomaly``, its explanation: ``anomaly_reason`` (the channel
that scored highest: forecast, level, range, stuck or sustained), ``expected_lo``,
``expected_hi``, the t+1 interval the value was expected in (null without a scale head;
per feature an object for multivariate models), and for multivariate models
``feature_share``, each feature's share of what that channel measured (feature → share,
summing to 1: which sensor moved).

Dead-letter record: the original key and bytes, with headers ``statecast.reason``,
``statecast.error``, ``statecast.source.topic``, ``statecast.source.partition`` and
``statecast.source.offset``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from pipeline.kafka_io import Header, Record

__all__ = ["dlq_headers", "encode_scores"]


def encode_scores(
    *,
    stream_ids: list[str],
    ts_raw: list[Any],
    values: npt.NDArray[np.float64],
    forecast: npt.NDArray[np.float64],
    score: npt.NDArray[np.float64],
    lo: npt.NDArray[np.float64] | None = None,
    hi: npt.NDArray[np.float64] | None = None,
    reasons: list[str] | None = None,
    expected_lo: npt.NDArray[np.float64] | None = None,
    expected_hi: npt.NDArray[np.float64] | None = None,
    shares: npt.NDArray[np.float64] | None = None,
    warm: npt.NDArray[np.bool_],
    threshold: float,
    features: tuple[str, ...],
    model: str,
    version: str,
    records: list[Record],
) -> list[bytes]:
    """One JSON document per scored event (arrays in, bytes out).

    The hot path of the scorer's output: arrays become Python lists in one call each,
    and the fields every document of the batch shares are serialised once and appended
    (which also copies orjson's output into a small object at once: its own buffers, kept
    until the batch is sent, made every document cost twice as much).
    """
    score = np.nan_to_num(score, nan=0.0)
    flagged = ((score >= threshold) & warm).tolist()
    warm_l = warm.tolist()
    score_l = score.round(6).tolist()
    multi = len(features) > 1
    if multi:
        val_list: list[Any] = [dict(zip(features, row, strict=True)) for row in values.tolist()]
    else:
        val_list = values[:, 0].tolist()
    fc_list = _steps(forecast, features)
    bands = None if lo is None or hi is None else (_steps(lo, features), _steps(hi, features))
    lo_list, hi_list = bands or (fc_list, fc_list)  # placeholders, deleted per document
    value_key = "values" if multi else "value"
    # Shared by the whole batch: '"threshold":..,"model":..,"model_version":..}'.
    tail = (
        b"," + orjson.dumps({"threshold": threshold, "model": model, "model_version": version})[1:]
    )
    dumps = orjson.dumps
    out = []
    for i, sid in enumerate(stream_ids):
        rec = records[i]
        doc = {
            "stream_id": sid,
            "ts": ts_raw[i],
            value_key: val_list[i],
            "forecast": fc_list[i],
            "forecast_lo": lo_list[i],
            "forecast_hi": hi_list[i],
            "anomaly_score": score_l[i],
            "is_anomaly": flagged[i],
            "warm": warm_l[i],
            "partition": rec.partition,
            "offset": rec.offset,
        }
        if bands is None:
            # Taken out, not merged in: merging a dict cost a fifth of this loop.
            del doc["forecast_lo"], doc["forecast_hi"]
        if flagged[i] and reasons is not None:
            doc["anomaly_reason"] = reasons[i]
            if expected_lo is not None and expected_hi is not None:
                doc["expected_lo"] = _per_feature(expected_lo[i], features)
                doc["expected_hi"] = _per_feature(expected_hi[i], features)
            if multi and shares is not None:
                doc["feature_share"] = dict(zip(features, shares[i].round(3).tolist(), strict=True))
        out.append(dumps(doc)[:-1] + tail)
    return out


def _steps(arr: npt.NDArray[np.float64], features: tuple[str, ...]) -> list[Any]:
    """``[N, horizon, F]`` → per event a list of steps: numbers (one feature) or objects of
    feature → number; NaN becomes null (orjson writes null for a non-finite float)."""
    rounded = arr.round(6)
    if len(features) > 1:
        return [
            [dict(zip(features, step, strict=True)) for step in steps] for steps in rounded.tolist()
        ]
    out: list[Any] = rounded[:, :, 0].tolist()
    return out


def _per_feature(row: npt.NDArray[np.float64], features: tuple[str, ...]) -> Any:
    vals = row.round(6).tolist()
    return dict(zip(features, vals, strict=True)) if len(features) > 1 else vals[0]


def dlq_headers(record: Record, reason: str, detail: str) -> list[Header]:
    return [
        ("statecast.reason", reason.encode()),
        ("statecast.error", detail.encode("utf-8", "replace")[:1000]),
        ("statecast.source.topic", record.topic.encode()),
        ("statecast.source.partition", str(record.partition).encode()),
        ("statecast.source.offset", str(record.offset).encode()),
    ]
