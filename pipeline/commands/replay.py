"""``statecast replay``: CSV rows into the input topic as sensor events.

Streams are merged by timestamp (each stream keeps its file order, even where a
file's timestamps step back, as NAB's DST rows do). Pacing: as fast as possible,
``rate`` events per second, or ``speedup`` times real time by the timestamps.
Format: JSON events (the timestamp as the CSV wrote it), or binary events
(:mod:`pipeline.kafka_io.binary_events`: epoch seconds, the values in the model's
feature order, which ``features`` names for a multi-feature CSV).
"""

from __future__ import annotations

import argparse
import heapq
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pipeline.commands.flags import add_kafka_flags, flags
from pipeline.config import KafkaConfig
from pipeline.engine.csvdata import Series, load_csv
from pipeline.errors import ConfigError, DataError
from pipeline.kafka_io import ensure_topic, open_producer
from pipeline.kafka_io.binary_events import encode_event_binary
from pipeline.kafka_io.codec import encode_event

__all__ = ["FORMATS", "add_parser", "collect_streams", "encoder", "merged_events", "replay", "run"]

FORMATS = ("json", "binary")
Encoder = Callable[[Series, int], tuple[bytes, bytes]]


def collect_streams(paths: Sequence[Path]) -> list[Series]:
    """Streams of every CSV under ``paths``; a folder's files are named by relative path."""
    out: list[Series] = []
    for root in paths:
        root = Path(root)
        if root.is_dir():
            for f in sorted(root.rglob("*.csv")):
                out.extend(load_csv(f, name=str(f.relative_to(root).with_suffix(""))))
        elif root.exists():
            out.extend(load_csv(root))
        else:
            raise DataError(f"{root} does not exist")
    if not out:
        raise DataError(f"no CSV files under {[str(p) for p in paths]}")
    return out


def merged_events(streams: Sequence[Series]) -> Iterator[tuple[float, Series, int]]:
    """``(ts, stream, row)`` in timestamp order across streams, file order within one."""
    heap = [(float(s.ts[0]), i, 0) for i, s in enumerate(streams) if len(s.ts)]
    heapq.heapify(heap)
    while heap:
        ts, i, row = heapq.heappop(heap)
        s = streams[i]
        yield ts, s, row
        if row + 1 < len(s.ts):
            heapq.heappush(heap, (float(s.ts[row + 1]), i, row + 1))


def encoder(fmt: str, features: Sequence[str] = ()) -> Encoder:
    """``(key, value)`` of a stream's row as an event of format ``fmt``.

    Binary events carry no feature names: their values follow ``features`` (the model's
    order), which a multi-feature CSV must name (all its columns, in any CSV order); a
    single-feature CSV needs none."""
    if fmt not in FORMATS:
        raise ConfigError(f"format {fmt!r} is not one of {FORMATS}")
    if fmt == "json":

        def as_json(s: Series, row: int) -> tuple[bytes, bytes]:
            raw: str | float = float(s.ts[row])
            if s.ts_text and not _numeric(s.ts_text[row]):
                raw = s.ts_text[row]  # the CSV's own text, echoed in the scores
            vals = s.values[row]
            payload: dict[str, float] | float = (
                dict(zip(s.features, vals.tolist(), strict=True))
                if len(s.features) > 1
                else float(vals[0])
            )
            return s.name.encode(), encode_event(s.name, raw, payload)

        return as_json
    order = tuple(features)

    def as_binary(s: Series, row: int) -> tuple[bytes, bytes]:
        if len(s.features) == 1 and len(order) <= 1:
            return encode_event_binary(s.name, float(s.ts[row]), [float(s.values[row, 0])])
        if sorted(order) != sorted(s.features):
            raise ConfigError(
                f"stream {s.name} has columns {list(s.features)}: binary events need "
                f"--features naming all of them in the model's order"
            )
        cols = [s.features.index(f) for f in order]
        return encode_event_binary(s.name, float(s.ts[row]), s.values[row, cols].tolist())

    return as_binary


def _numeric(text: str) -> bool:
    """Epoch seconds written as a number: sent as one (the contract's string is ISO-8601)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def replay(
    kafka: KafkaConfig,
    topic: str,
    streams: Sequence[Series],
    *,
    rate: float | None = None,
    speedup: float | None = None,
    partitions: int = 4,
    progress: bool = True,
    encode: Encoder | None = None,
) -> int:
    """Produce every row as an event (JSON unless ``encode`` says otherwise, see
    :func:`encoder`); returns how many were sent (all acknowledged)."""
    if rate is not None and speedup is not None:
        raise ConfigError("give --rate or --speedup, not both")
    encode = encode or encoder("json")
    for s in streams:
        if len(s.ts):
            encode(s, 0)  # a format a stream cannot take fails before the topic exists
    ensure_topic(kafka, topic, partitions)
    producer = open_producer(kafka)
    total = sum(len(s.ts) for s in streams)
    started = time.monotonic()
    first_ts: float | None = None
    sent = 0
    bar = tqdm(
        total=total, desc=f"replay -> {topic}", unit="ev", disable=not progress, smoothing=0.1
    )
    try:
        for ts, s, row in merged_events(streams):
            if rate is not None:
                due = started + sent / rate
            elif speedup is not None:
                first_ts = ts if first_ts is None else first_ts
                due = started + (ts - first_ts) / speedup
            else:
                due = 0.0
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            key, value = encode(s, row)
            producer.send(topic, key, value)
            sent += 1
            if sent % 1000 == 0:
                bar.update(1000)
        producer.flush()
        bar.update(sent % 1000)
    finally:
        bar.close()
        producer.close()
    return sent


# -- the subcommand ------------------------------------------------------------


def run(ns: argparse.Namespace) -> int:
    from pipeline.commands.replay import collect_streams, replay
    from pipeline.config import KafkaConfig, load

    streams = collect_streams([Path(p) for p in ns.paths])
    n = replay(
        load(KafkaConfig, flags(ns)),
        ns.topic,
        streams,
        rate=ns.rate,
        speedup=ns.speedup,
        progress=not ns.no_progress,
        encode=encoder(ns.format, [f for f in (ns.features or "").split(",") if f]),
    )
    print(f"replayed {n} events from {len(streams)} streams into {ns.topic}")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("replay", help="produce CSV rows as sensor events")
    p.add_argument("paths", nargs="+", help="CSV files or folders")
    p.add_argument("--topic", default="sensor-readings")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--rate", type=float, help="events per second")
    pace.add_argument("--speedup", type=float, help="times real time, by the timestamps")
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="json",
        help="JSON events, or binary events (the faster layout; docs: the event contract)",
    )
    p.add_argument(
        "--features",
        help="binary, multi-feature CSVs: the model's feature order (comma-separated)",
    )
    p.add_argument("--no-progress", dest="no_progress", action="store_true")
    add_kafka_flags(p)
    p.set_defaults(func=run)
