"""Training data: CSV files or folders, or a time range of the live input topic.

Many streams train one model. Each stream is normalised causally with the
scorer's own normaliser (:mod:`pipeline.engine.normalise`), split in time (the first
``1 - val_fraction`` of every stream trains, the rest validates; nothing is
shuffled across the split and no training target looks into the validation
part), and cut into segments that the loop walks with truncated BPTT.
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from pipeline.config import KafkaConfig
from pipeline.engine.covariates import covariates as event_covariates
from pipeline.engine.csvdata import Series, load_csv, load_paths
from pipeline.engine.normalise import NormaliserParams, normalise_series
from pipeline.errors import DataError, EventRejected
from pipeline.kafka_io.codec import decode_event

__all__ = [
    "Prepared",
    "Series",
    "load_csv",
    "load_kafka",
    "load_paths",
    "parse_duration",
    "prepare",
    "without_tail",
]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
MIN_POINTS = 64


def parse_duration(text: str) -> float:
    """``90s``, ``15m``, ``36h``, ``7d`` → seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    try:
        return float(text[:-1]) * units[text[-1]]
    except (KeyError, ValueError, IndexError) as exc:
        raise DataError(f"duration {text!r} must look like 90s, 15m, 36h or 7d") from exc


def load_kafka(
    config: KafkaConfig,
    topic: str,
    since_s: float,
    features: Sequence[str] = ("value",),
    max_bytes: int = 65536,
) -> list[Series]:
    """Streams from ``topic`` appended in the last ``since_s`` seconds (offsets-for-times).

    Invalid events are skipped (the scorer already dead-letters them).
    """
    import kafka
    import kafka.errors
    from kafka.structs import TopicPartition as KTP

    from pipeline.kafka_io.kafkapython import client_settings

    try:
        consumer = kafka.KafkaConsumer(enable_auto_commit=False, **client_settings(config))
        parts = [KTP(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        if not parts:
            raise DataError(f"topic {topic} does not exist or has no partitions")
        consumer.assign(parts)
        start_ms = int((time.time() - since_s) * 1000)
        starts = consumer.offsets_for_times({tp: start_ms for tp in parts})
        ends = consumer.end_offsets(parts)
        todo = {}
        for tp in parts:
            found = starts.get(tp)
            if found is None:  # nothing that recent in this partition
                continue
            consumer.seek(tp, found.offset)
            if found.offset < ends[tp]:
                todo[tp] = ends[tp]
        groups: dict[str, list[tuple[float, list[float]]]] = defaultdict(list)
        while todo:
            for tp, recs in consumer.poll(timeout_ms=1000, max_records=5000).items():
                for r in recs:
                    if r.offset >= todo.get(tp, -1):
                        continue
                    try:
                        sid, ts, _raw, vals = decode_event(r.key, r.value, features, max_bytes)
                    except EventRejected:
                        continue
                    groups[sid].append((ts, vals))
                if consumer.position(tp) >= ends[tp]:
                    todo.pop(tp, None)
        consumer.close()
    except kafka.errors.KafkaError as exc:
        raise DataError(f"cannot read training data from topic {topic}: {exc}") from exc
    return [
        Series(
            sid, np.asarray([t for t, _ in evs]), np.asarray([v for _, v in evs]), tuple(features)
        )
        for sid, evs in sorted(groups.items())
    ]


@dataclasses.dataclass
class Prepared:
    """Model-ready tensors.

    ``seg_x [N, S, F]`` inputs, ``seg_y [N, S, horizon, F]`` targets and
    ``seg_mask [N, S, horizon]`` (1 where the target exists, lies in the training part
    and the step is past the burn-in) for training; ``val`` holds, per stream, the
    whole normalised series and the index where validation starts.
    """

    features: tuple[str, ...]
    seg_x: F32
    seg_y: F32
    seg_mask: F32
    val: list[tuple[str, F32, F32, F32, int]]
    streams: list[Series]
    summary: dict[str, object]


def targets_of(z_values: F64, means: F64, stds: F64, horizon: int) -> tuple[F32, F32]:
    """Targets ``y[t, k] = (x[t+k+1] - mean_t) / std_t`` and their existence mask."""
    T, F = z_values.shape
    y = np.zeros((T, horizon, F), np.float32)
    mask = np.zeros((T, horizon), np.float32)
    for k in range(horizon):
        n = T - (k + 1)
        if n <= 0:
            continue
        y[:n, k] = (z_values[k + 1 :] - means[:n]) / stds[:n]
        mask[:n, k] = 1.0
    return y, mask


def prepare(
    streams: list[Series],
    norm: NormaliserParams,
    horizon: int,
    val_fraction: float,
    segment: int,
    burn_in: int,
    covariates: tuple[str, ...] = (),
) -> Prepared:
    """Normalise, split in time and segment every stream; the model inputs are the
    normalised values followed by the event-time ``covariates`` of each step."""
    streams = [s for s in streams if len(s.ts) >= MIN_POINTS]
    if not streams:
        raise DataError(f"no stream has at least {MIN_POINTS} points")
    features = streams[0].features
    for s in streams:
        if s.features != features:
            raise DataError(f"stream {s.name} has features {s.features}, expected {features}")
    xs, ys, ms = [], [], []
    val = []
    for s in streams:
        z, means, stds = normalise_series(norm, s.values)
        if covariates:
            prev = np.concatenate([[np.nan], s.ts[:-1]])
            z = np.concatenate([z, event_covariates(s.ts, prev, covariates)], axis=1)
        y, mask = targets_of(s.values, means, stds, horizon)
        y = np.clip(y, -norm.clip, norm.clip)
        T = len(z)
        split = int(T * (1.0 - val_fraction))
        # No look-ahead: a training target must lie before the split.
        train_mask = mask[:split].copy()
        for k in range(horizon):
            train_mask[max(0, split - (k + 1)) :, k] = 0.0
        val.append((s.name, z, y, mask, split))
        for start in range(0, split - burn_in - 1, segment):
            stop = min(start + segment, split)
            if stop - start <= burn_in + 1:
                continue
            seg_mask = train_mask[start:stop].copy()
            seg_mask[:burn_in] = 0.0
            pad = segment - (stop - start)
            xs.append(np.pad(z[start:stop], ((0, pad), (0, 0))))
            ys.append(np.pad(y[start:stop], ((0, pad), (0, 0), (0, 0))))
            ms.append(np.pad(seg_mask, ((0, pad), (0, 0))))
    if not xs:
        raise DataError("streams are too short to cut a single training segment")
    summary = {
        "streams": len(streams),
        "points": int(sum(len(s.ts) for s in streams)),
        "segments": len(xs),
        "features": list(features),
        "time_range": [
            float(min(s.ts.min() for s in streams)),
            float(max(s.ts.max() for s in streams)),
        ],
    }
    return Prepared(features, np.stack(xs), np.stack(ys), np.stack(ms), val, streams, summary)


def without_tail(s: Series, fraction: float) -> Series:
    """``s`` without its last ``fraction`` of points (the held-out gate window)."""
    n = len(s.ts) - int(len(s.ts) * fraction)
    return dataclasses.replace(s, ts=s.ts[:n], values=s.values[:n], ts_text=s.ts_text[:n])
