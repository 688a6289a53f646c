"""The scorer against the real broker: exact outputs, per-stream order, dead letters, live swap."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import orjson
import pytest

from pipeline.config import KafkaConfig, ScorerConfig
from pipeline.engine.registry import Registry
from pipeline.kafka_io import open_producer
from pipeline.kafka_io.codec import encode_event
from tests.kafka_helpers import (
    ScorerThread,
    produce,
    read_all,
    read_scores,
    scorer_config,
    ts_per_stream,
    wait_records,
    wait_until,
)
from training.synthetic import generate

pytestmark = pytest.mark.integration


@pytest.fixture
def kafka_config(backend_config: KafkaConfig) -> KafkaConfig:
    """Every test here runs once per Kafka client backend."""
    return backend_config


STREAMS, EVENTS = 20, 100
T0 = 1_764_000_000


def _feed(rng: np.random.Generator) -> dict[str, list[float]]:
    return {
        f"pump-{s:02d}": (
            50 + 10 * np.sin(np.arange(EVENTS) / 7 + s) + rng.normal(0, 1, EVENTS)
        ).tolist()
        for s in range(STREAMS)
    }


def _interleaved(feed: dict[str, list[float]]) -> list[tuple[bytes, bytes]]:
    out = []
    for t in range(EVENTS):
        for sid, vals in feed.items():
            out.append((sid.encode(), encode_event(sid, T0 + 60 * t, vals[t])))
    return out


BAD: dict[str, tuple[bytes | None, bytes]] = {
    "malformed_json": (b"pump-00", b'{"stream_id": "pump-00", "ts": 1, "value": '),
    "missing_field": (b"pump-01", b'{"stream_id": "pump-01", "value": 3.0}'),
    "wrong_type": (b"pump-02", b'{"stream_id": "pump-02", "ts": 1764000000, "value": "hot"}'),
    "non_finite": (b"pump-03", b'{"stream_id": "pump-03", "ts": 1764000000, "value": NaN}'),
    "wrong_features": (
        b"pump-04",
        b'{"stream_id": "pump-04", "ts": 1764000000, "values": {"temp": 1.0}}',
    ),
    "oversized": (
        b"pump-05",
        b'{"stream_id": "pump-05", "ts": 1764000000, "value": 1.0, "pad": "'
        + b"x" * 70_000
        + b'"}',
    ),
    "key_mismatch": (b"pump-06", b'{"stream_id": "pump-07", "ts": 1764000000, "value": 1.0}'),
}


def _covariates_by_hand(names: list[str], ts: float, prev: float | None) -> list[float]:
    """The documented covariates, written out independently of pipeline.engine.covariates."""
    day = 2 * math.pi * (ts % 86400) / 86400
    monday_based = (ts + 3 * 86400) % (7 * 86400)  # 1970-01-01 was a Thursday
    week = 2 * math.pi * monday_based / (7 * 86400)
    gap = 0.0 if prev is None else min(math.log1p((ts - prev) / 60) / 5, 3.0)
    known = {
        "tod_sin": math.sin(day),
        "tod_cos": math.cos(day),
        "dow_sin": math.sin(week),
        "dow_cos": math.cos(week),
        "gap": gap,
    }
    return [known[n] for n in names]


def _reference(registry: Path, model: str, values: list[float]) -> np.ndarray:
    """Forecasts of one stream, stepped by hand: plain-Python normaliser, covariates and
    one-step gain + raw onnxruntime (events at T0 + 60 s * t, as _interleaved makes them)."""
    reg = Registry(registry)
    version = reg.current(model)
    doc = json.loads((registry / model / str(version) / "model.json").read_text())
    norm = doc["normalisation"]
    sess = ort.InferenceSession(str(registry / model / str(version) / "model.onnx"))
    L, H = doc["layers"], doc["hidden"]
    h = np.zeros((L, 1, H), np.float32)
    c = np.zeros((L, 1, H), np.float32)
    mean, var = 0.0, 0.0
    out = []
    names = doc.get("covariates", [])
    # The gain (docs: pipeline/engine/gain.py): EW least squares of the actual one-step
    # change on the predicted one, in units of the spread before the step.
    gxy = gxx = gn = 0.0
    prev_x = prev_change = None
    for n, x in enumerate(values, start=1):
        ts = T0 + 60.0 * (n - 1)
        cov = _covariates_by_hand(names, ts, None if n == 1 else ts - 60.0)
        std_prev = max(var**0.5, norm["min_std_abs"] + norm["min_std_rel"] * abs(mean))
        if prev_x is not None and prev_change is not None:
            dn, cn = prev_change / std_prev, (x - prev_x) / std_prev
            gxy, gxx, gn = 0.99 * gxy + 0.01 * dn * cn, 0.99 * gxx + 0.01 * dn * dn, gn + 1
        a = max(1.0 / n, norm["alpha"])
        d = x - mean
        mean += a * d
        var = (1 - a) * (var + a * d * d)
        std = max(var**0.5, norm["min_std_abs"] + norm["min_std_rel"] * abs(mean))
        z = min(max((x - mean) / std, -norm["clip"]), norm["clip"])
        f, _scale, h, c = sess.run(None, {"x": np.array([[z, *cov]], np.float32), "h": h, "c": c})
        fc = f[0, :, 0].astype(np.float64) * std + mean
        prev_x, prev_change = x, fc[0] - x
        gain = min(max(gxy / gxx, 0.0), 1.5) if gn >= 50 and gxx > 0 else 1.0
        fc[0] = x + gain * (fc[0] - x)
        out.append(fc)
    return np.array(out)


def _config(
    kafka_config: KafkaConfig, registry: Path, inp: str, group: str, **kw: object
) -> ScorerConfig:
    return scorer_config(kafka_config, registry, inp, group, model_check_s=0.5, **kw)


def test_scores_every_event_in_order_and_dead_letters_each_bad_kind(
    kafka_config: KafkaConfig,
    tiny_registry: Path,
    topic_factory: Callable[..., str],
    group_factory: Callable[[], str],
) -> None:
    inp = topic_factory("in", partitions=4)
    feed = _feed(np.random.default_rng(1))
    good = _interleaved(feed)
    half = len(good) // 2
    late = (b"pump-08", encode_event("pump-08", T0 - 3600, 1.0))
    produce(kafka_config, inp, good[:half] + list(BAD.values()) + good[half:] + [late])

    ScorerThread(_config(kafka_config, tiny_registry, inp, group_factory())).start().join()

    outputs = read_all(kafka_config, inp + ".scores", expect=STREAMS * EVENTS)
    dlq = read_all(kafka_config, inp + ".scores.dlq", expect=len(BAD) + 1)
    assert len(outputs) == STREAMS * EVENTS
    by_stream: dict[str, list[dict[str, object]]] = defaultdict(list)
    for rec in outputs:
        doc = orjson.loads(rec.value or b"")
        assert rec.key == str(doc["stream_id"]).encode()
        by_stream[str(doc["stream_id"])].append(doc)
    assert sorted(by_stream) == sorted(feed)
    for sid, docs in by_stream.items():
        assert [d["ts"] for d in docs] == [T0 + 60 * t for t in range(EVENTS)]
        assert [d["value"] for d in docs] == pytest.approx(feed[sid])
        ref = _reference(tiny_registry, "tiny", feed[sid])
        np.testing.assert_allclose(
            np.array([d["forecast"] for d in docs]), ref, rtol=1e-4, atol=1e-4
        )
        assert all(0.0 <= float(d["anomaly_score"]) <= 1.0 for d in docs)  # type: ignore[arg-type]
        assert [d["warm"] for d in docs].index(True) == 48
        assert {d["model"] for d in docs} == {"tiny"}

    reasons = {dict(r.headers)["statecast.reason"].decode(): r for r in dlq}
    assert sorted(reasons) == sorted([*BAD, "out_of_order"])
    for reason, rec in reasons.items():
        headers = dict(rec.headers)
        assert headers["statecast.source.topic"] == inp.encode()
        assert int(headers["statecast.source.offset"]) >= 0
        assert headers["statecast.error"]
        expected = late if reason == "out_of_order" else BAD[reason]
        assert (rec.key, rec.value) == expected


def test_live_model_swap_under_load_skips_nothing(
    kafka_config: KafkaConfig,
    tiny_registry: Path,
    topic_factory: Callable[..., str],
    group_factory: Callable[[], str],
    tmp_path: Path,
) -> None:
    registry = tmp_path / "models"
    shutil.copytree(tiny_registry, registry)
    reg = Registry(registry)
    v1 = reg.current("tiny")
    assert v1 is not None
    # A second version: the same graph registered under a new version name.
    doc = json.loads((registry / "tiny" / v1 / "model.json").read_text())
    v2 = v1 + "-b"
    reg.write_version("tiny", v2, registry / "tiny" / v1 / "model.onnx", {**doc, "version": v2})

    inp = topic_factory("in", partitions=2)
    feed = _feed(np.random.default_rng(2))
    events = _interleaved(feed)
    runner = ScorerThread(
        _config(kafka_config, registry, inp, group_factory(), max_poll_records=100, until_idle=None)
    )
    runner.start()
    produce(kafka_config, inp, events[: len(events) // 2])
    wait_records(kafka_config, inp + ".scores", 1)  # the swap lands while streams have state
    reg.promote("tiny", v2)
    swaps = runner.scorer.metrics.swaps.labels("tiny")
    wait_until(lambda: swaps._value.get() == 1, "the scorer to swap to v2")
    produce(kafka_config, inp, events[len(events) // 2 :])
    wait_records(kafka_config, inp + ".scores", len(events))
    # Every stream the swap left stale is rebuilt (as used, or between batches), and the
    # gauge on-call people watch says so.
    served = runner.scorer.models["tiny"]
    wait_until(lambda: not served.catching_up, "every stream rebuilt in v2")
    assert not served.store.stale.any()
    stale = runner.scorer.metrics.stale_streams.labels("tiny")
    wait_until(lambda: stale._value.get() == 0, "the stale-streams gauge at 0")
    runner.stop()

    outputs = read_scores(kafka_config, inp + ".scores", expect=len(events))
    assert len(outputs) == len(events)
    versions = [o["model_version"] for o in outputs]
    assert set(versions) == {v1, v2}
    per_stream = ts_per_stream(outputs)
    assert all(ts == [T0 + 60 * t for t in range(EVENTS)] for ts in per_stream.values())
    assert runner.scorer.metrics.swaps.labels("tiny")._value.get() == 1


def test_a_corrupted_model_is_refused_and_the_old_one_keeps_serving(
    kafka_config: KafkaConfig,
    tiny_registry: Path,
    topic_factory: Callable[..., str],
    group_factory: Callable[[], str],
    tmp_path: Path,
) -> None:
    registry = tmp_path / "models"
    shutil.copytree(tiny_registry, registry)
    reg = Registry(registry)
    v1 = reg.current("tiny")
    assert v1 is not None
    doc = json.loads((registry / "tiny" / v1 / "model.json").read_text())
    bad = v1 + "-corrupt"
    reg.write_version("tiny", bad, registry / "tiny" / v1 / "model.onnx", {**doc, "version": bad})
    onnx_file = registry / "tiny" / bad / "model.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes()[:-100])

    inp = topic_factory("in")
    feed = _feed(np.random.default_rng(3))
    events = _interleaved(feed)[:200]
    runner = ScorerThread(_config(kafka_config, registry, inp, group_factory(), until_idle=None))
    runner.start()
    produce(kafka_config, inp, events[:100])
    wait_records(kafka_config, inp + ".scores", 100)
    (registry / "tiny" / "CURRENT").write_text(bad + "\n")  # an operator bypassing `promote`
    refused = runner.scorer.metrics.refused.labels("tiny")
    wait_until(lambda: refused._value.get() == 1, "the scorer to refuse the corrupt version")
    produce(kafka_config, inp, events[100:])
    wait_records(kafka_config, inp + ".scores", 200)
    runner.stop()
    outputs = read_scores(kafka_config, inp + ".scores", expect=200)
    assert len(outputs) == 200
    assert {o["model_version"] for o in outputs} == {v1}
    assert runner.scorer.metrics.refused.labels("tiny")._value.get() == 1


def test_scorer_follows_models_published_on_the_model_topic(
    kafka_config: KafkaConfig,
    tiny_registry: Path,
    topic_factory: Callable[..., str],
    group_factory: Callable[[], str],
    tmp_path: Path,
) -> None:
    from pipeline.kafka_io.model_topic import publish_model

    # The scorer's machine has only the first version on disk.
    local = tmp_path / "local"
    shutil.copytree(tiny_registry, local)
    reg = Registry(local)
    v1 = reg.current("tiny")
    assert v1 is not None
    doc = json.loads((local / "tiny" / v1 / "model.json").read_text())
    # The trainer's machine promotes v2 and publishes it.
    remote = Registry(tmp_path / "remote")
    shutil.copytree(tiny_registry, tmp_path / "remote")
    v2 = v1 + "-pub"
    remote.write_version(
        "tiny", v2, tmp_path / "remote" / "tiny" / v1 / "model.onnx", {**doc, "version": v2}
    )
    remote.promote("tiny", v2)
    models_topic = topic_factory("models", config={"cleanup.policy": "compact"})

    inp = topic_factory("in")
    cfg = dataclasses.replace(
        _config(kafka_config, local, inp, group_factory()),
        until_idle=None,
        model_topic=models_topic,
        model_topic_check_s=0.5,
    )
    runner = ScorerThread(cfg).start()
    publish_model(kafka_config, models_topic, remote.meta("tiny"))
    swaps = runner.scorer.metrics.swaps.labels("tiny")
    wait_until(lambda: swaps._value.get() == 1, "the scorer to install and swap to v2")
    produce(kafka_config, inp, _interleaved(_feed(np.random.default_rng(4)))[:100])
    wait_records(kafka_config, inp + ".scores", 100)
    runner.stop()
    outputs = read_scores(kafka_config, inp + ".scores", expect=100)
    assert {o["model_version"] for o in outputs} == {v2}
    assert reg.current("tiny") == v2


def _register_default_as(registry: Path, model: str) -> str:
    """The shipped default model registered as a version of ``model``: a genuinely
    different network (other size and training) from the tiny one."""
    src = Path(__file__).resolve().parents[3] / "exported_models" / "default"
    v = (src / "CURRENT").read_text().strip()
    doc = json.loads((src / v / "model.json").read_text())
    version = v + "-shipped"
    doc = {**doc, "model": model, "version": version}
    Registry(registry).write_version(model, version, src / v / "model.onnx", doc)
    return version


def _register_noise_model(registry: Path, model: str, tmp_path: Path) -> str:
    """A version of ``model`` trained on white noise: it forecasts each stream's running
    mean, far worse than the others on seasonal feeds (a bad model, honestly made)."""
    from training.config import TrainConfig
    from training.synthetic import SyntheticStream, write_csv
    from training.trainer import Trainer, TrainJob

    rng = np.random.default_rng(0)
    noise = [
        SyntheticStream(s.name, s.ts, rng.normal(0, 1, len(s.ts)), ())
        for s in generate(streams=4, length=600, seed=1, anomalies_per_stream=0)
    ]
    job = TrainJob(
        data=tuple(write_csv(noise, tmp_path / "noise")), registry=registry, model=model,
        plot=False, progress=False, promote="never",
    )  # fmt: skip
    cfg = TrainConfig(hidden=16, layers=2, horizon=3, max_epochs=2, segment=128, bptt=32, burn_in=8)
    return Trainer(job, cfg).run().version


@pytest.mark.slow_with("kafka-python")
def test_shadow_promotion_rejection_and_rollback_on_live_evidence(
    kafka_config: KafkaConfig,
    tiny_registry: Path,
    topic_factory: Callable[..., str],
    group_factory: Callable[[], str],
    tmp_path: Path,
) -> None:
    """The model lifecycle on one live feed, between genuinely different networks: a
    better shadow is promoted on live evidence, one that is not better is rejected, a
    worse champion promoted by hand is rolled back; across the three live swaps no event
    is lost or reordered."""
    registry = tmp_path / "models"
    shutil.copytree(tiny_registry, registry)
    reg = Registry(registry)
    tiny = reg.current("tiny")
    assert tiny is not None
    shipped = _register_default_as(registry, "tiny")
    bad = _register_noise_model(registry, "tiny", tmp_path)
    reg.promote("tiny", bad)
    reg.set_shadow("tiny", shipped)

    inp = topic_factory("in", partitions=2)
    feed = generate(streams=10, length=400, seed=9, anomalies_per_stream=0)
    events = [
        (s.name.encode(), encode_event(s.name, float(s.ts[t]), float(s.values[t])))
        for t in range(400)
        for s in feed
    ]
    runner = ScorerThread(
        _config(
            kafka_config, registry, inp, group_factory(), until_idle=None, max_poll_records=100,
            shadow_promote_after=400, rollback_after=600, rollback_margin=0.02,
        )
    )  # fmt: skip
    runner.start()
    m, live = runner.scorer.metrics, runner.scorer.live
    swaps = m.swaps.labels("tiny")

    def decided(what: str) -> Callable[[], bool]:
        return lambda: m.lifecycle.labels("tiny", what)._value.get() == 1

    # 1. The shipped model shadows the bad one and beats it: promoted, then swapped in.
    produce(kafka_config, inp, events[:1000])
    wait_until(decided("shadow_promoted"), "the better shadow to be promoted")
    wait_until(lambda: swaps._value.get() == 1, "the scorer to swap to it")
    assert reg.current("tiny") == shipped and reg.shadow("tiny") is None
    evidence = reg.meta("tiny", shipped).raw["live_evidence"]
    assert evidence["promoted"] and evidence["champion"]["version"] == bad
    assert evidence["shadow"]["mae"] < 0.98 * evidence["champion"]["mae"]
    assert evidence["shadow"]["events"] == evidence["champion"]["events"] >= 400
    # 2. The bad one runs beside its successor until judged: the successor is kept. Then
    #    the tiny model shadows it, is not better, and is rejected: no swap.
    reg.set_shadow("tiny", tiny)
    produce(kafka_config, inp, events[1000:1800])
    wait_until(decided("kept"), "the promoted model to be judged against the previous one")
    assert not reg.meta("tiny", shipped).raw["live_rollback"]["rolled_back"]
    wait_until(lambda: live.shadow_of("tiny") is not None, "the scorer to start the shadow")
    produce(kafka_config, inp, events[1800:2600])
    wait_until(decided("shadow_rejected"), "the shadow to be rejected")
    assert reg.current("tiny") == shipped and reg.shadow("tiny") is None
    assert not reg.meta("tiny", tiny).raw["live_evidence"]["promoted"]
    # 3. An operator promotes the bad model again: rolled back on its first live events,
    #    judged against the shipped one running beside it.
    reg.promote("tiny", bad)
    wait_until(lambda: swaps._value.get() == 2, "the scorer to swap to the bad model")
    produce(kafka_config, inp, events[2600:])
    wait_until(decided("rolled_back"), "the worse champion to be rolled back")
    wait_until(lambda: swaps._value.get() == 3, "the scorer to swap back")
    assert reg.current("tiny") == shipped
    rollback = reg.meta("tiny", bad).raw["live_rollback"]
    assert rollback["rolled_back"] and rollback["previous"]["version"] == shipped
    assert rollback["this"]["events"] == rollback["previous"]["events"] >= 600
    wait_records(kafka_config, inp + ".scores", len(events))
    runner.stop()

    outputs = read_scores(kafka_config, inp + ".scores", expect=len(events))
    assert len(outputs) == len(events)
    assert {o["model_version"] for o in outputs} == {bad, shipped}
    per_stream = ts_per_stream(outputs)
    assert all(ts == sorted(ts) and len(ts) == 400 for ts in per_stream.values())


def test_a_trickle_is_scored_in_turns_spaced_by_the_linger_each_event_once(
    kafka_config: KafkaConfig,
    tiny_registry: Path,
    topic_factory: Callable[..., str],
    group_factory: Callable[[], str],
) -> None:
    """A loop turn costs the same whatever its size: with ``poll_linger_ms`` a light load
    is scored in turns at least the linger apart, and still every event once, in order."""
    inp = topic_factory("in", partitions=2)
    feed = _interleaved(_feed(np.random.default_rng(2)))[:100]
    linger_s = 0.25
    scorer = ScorerThread(
        _config(
            kafka_config, tiny_registry, inp, group_factory(), poll_linger_ms=int(linger_s * 1000)
        )
    ).start()
    producer = open_producer(kafka_config)
    producer.send(inp, *feed[0])  # the producer's first flush takes its id: not paced
    producer.flush()
    wait_records(kafka_config, inp + ".scores", 1)
    began = time.monotonic()
    for key, value in feed[1:]:
        producer.send(inp, key, value)
        producer.flush()
        time.sleep(0.01)
    producer.close()
    wait_records(kafka_config, inp + ".scores", len(feed))
    took = time.monotonic() - began
    scorer.join()
    turns = scorer.scorer.metrics.registry.get_sample_value("statecast_batch_size_events_count")
    assert turns is not None
    # The first record's turn, then turns at least the linger apart over the paced part
    # (and the wait for its last output): one record per turn would be ~100.
    assert turns <= 2 + took / linger_s, (turns, took)
    docs = [orjson.loads(r.value or b"") for r in read_all(kafka_config, inp + ".scores")]
    assert sorted((d["partition"], d["offset"]) for d in docs) == sorted(
        {(d["partition"], d["offset"]) for d in docs}
    )
    assert len(docs) == len(feed)
    by_stream: dict[str, list[int]] = defaultdict(list)
    for d in docs:
        by_stream[str(d["stream_id"])].append(int(d["ts"]))
    assert all(ts == sorted(ts) for ts in by_stream.values())
