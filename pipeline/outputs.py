"""What the scorer writes: score records (output topic) and dead-letter records (DLQ).

Score record value (key = stream id)::

    {"stream_id", "ts" (as received), "value" | "values", "forecast" (horizon steps;
     per step a number, or an object of feature -> number for multivariate models),
     "anomaly_score" in [0, 1], "is_anomaly", "threshold", "warm", "model",
     "model_version", "partition", "offset"}

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
    warm: npt.NDArray[np.bool_],
    threshold: float,
    features: tuple[str, ...],
    model: str,
    version: str,
    records: list[Record],
) -> list[bytes]:
    """One JSON document per scored event (arrays in, bytes out)."""
    score = np.nan_to_num(score, nan=0.0)
    flagged = (score >= threshold) & warm
    multi = len(features) > 1
    fc_list = forecast.round(6).tolist()
    val_list = values.tolist()
    out = []
    for i, sid in enumerate(stream_ids):
        doc: dict[str, Any] = {"stream_id": sid, "ts": ts_raw[i]}
        if multi:
            doc["values"] = dict(zip(features, val_list[i], strict=True))
            doc["forecast"] = [dict(zip(features, step, strict=True)) for step in fc_list[i]]
        else:
            doc["value"] = val_list[i][0]
            doc["forecast"] = [step[0] for step in fc_list[i]]
        rec = records[i]
        doc.update(
            anomaly_score=round(float(score[i]), 6),
            is_anomaly=bool(flagged[i]),
            threshold=threshold,
            warm=bool(warm[i]),
            model=model,
            model_version=version,
            partition=rec.partition,
            offset=rec.offset,
        )
        out.append(orjson.dumps(doc))
    return out


def dlq_headers(record: Record, reason: str, detail: str) -> list[Header]:
    return [
        ("statecast.reason", reason.encode()),
        ("statecast.error", detail.encode("utf-8", "replace")[:1000]),
        ("statecast.source.topic", record.topic.encode()),
        ("statecast.source.partition", str(record.partition).encode()),
        ("statecast.source.offset", str(record.offset).encode()),
    ]
