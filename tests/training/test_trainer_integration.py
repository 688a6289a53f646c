"""The trainer end to end: from CSV and from the live Kafka topic, into a real registry."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from pipeline.config import KafkaConfig
from pipeline.engine.covariates import COVARIATES
from pipeline.engine.registry import Registry, sha256_of
from pipeline.kafka_io.codec import encode_event
from pipeline.kafka_io.model_topic import install_latest
from tests.kafka_helpers import produce
from training.config import TrainConfig
from training.synthetic import generate
from training.trainer import Trainer, TrainJob

SMALL = TrainConfig(hidden=8, layers=1, horizon=2, max_epochs=2, segment=128, bptt=32, burn_in=8)


def test_registered_model_is_complete_and_verifiable(tiny_registry: Path) -> None:
    reg = Registry(tiny_registry)
    v = reg.current("tiny")
    assert v is not None
    doc = json.loads((tiny_registry / "tiny" / v / "model.json").read_text())
    assert doc["sha256"] == sha256_of(tiny_registry / "tiny" / v / "model.onnx")
    assert doc["parity_max_abs_diff"] <= 1e-4
    for key in (
        "format_version",
        "model",
        "version",
        "created_at",
        "features",
        "horizon",
        "layers",
        "hidden",
        "inputs",
        "outputs",
        "normalisation",
        "anomaly",
        "training_config",
        "data_summary",
        "validation",
        "library_versions",
    ):
        assert key in doc
    assert (
        len(doc["validation"]["mae"]) == doc["horizon"] == len(doc["validation"]["persistence_mae"])
    )
    assert 0.0 <= doc["validation"]["alarm_rate"] < 0.5
    assert doc["anomaly"]["threshold"] == 0.6
    sess = ort.InferenceSession(str(tiny_registry / "tiny" / v / "model.onnx"))
    f, _, _, _ = sess.run(
        None,
        {
            "x": np.zeros((5, doc["inputs"]["x"][1]), np.float32),
            "h": np.zeros((2, 5, 16), np.float32),
            "c": np.zeros((2, 5, 16), np.float32),
        },
    )
    assert f.shape == (5, 3, 1)
    assert doc["covariates"] == list(COVARIATES)
    assert doc["inputs"]["x"][1] == 1 + len(COVARIATES)
    # The gate window (each stream's last 10%, 80 of its 800 five-minute points) is
    # neither trained nor early-stopped on: the fitted data ends before it.
    ends = [s.ts[-1] for s in generate(streams=6, length=800, seed=3)]
    assert doc["data_summary"]["points"] == 6 * 720
    assert doc["data_summary"]["time_range"][1] == max(ends) - 80 * 300.0
    assert "held out" in doc["champion_comparison"]["window"]


@pytest.mark.integration
def test_train_from_kafka_topic_and_publish_to_model_topic(
    kafka_config: KafkaConfig, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    topic = topic_factory("readings", partitions=2)
    streams = generate(streams=4, length=300, seed=5)
    produce(
        kafka_config,
        topic,
        [
            (s.name.encode(), encode_event(s.name, float(t), float(v)))
            for i in range(300)
            for s in streams
            for t, v in [(s.ts[i], s.values[i])]
        ]
        + [(b"junk", b"not json")],
    )
    models_topic = topic_factory("models", config={"cleanup.policy": "compact"})
    job = TrainJob(
        from_kafka=topic,
        since="1h",
        registry=tmp_path / "r",
        model="k",
        plot=False,
        progress=False,
        kafka=kafka_config,
        publish_topic=models_topic,
    )
    outcome = Trainer(job, SMALL).run()
    assert outcome.promoted
    assert outcome.doc["data_summary"]["streams"] == 4
    # 4 streams x 300 events read; each stream's last 10% is the gate's, not fitted.
    assert outcome.doc["data_summary"]["points"] == 4 * 270

    # A scorer machine without the shared disk installs it from the topic.
    remote = Registry(tmp_path / "remote")
    assert install_latest(kafka_config, models_topic, remote).installed == [f"k/{outcome.version}"]
    assert remote.current("k") == outcome.version
    assert remote.meta("k").sha256 == Registry(tmp_path / "r").meta("k").sha256
    assert install_latest(kafka_config, models_topic, remote).installed == []


def test_promote_never_registers_without_promoting(tiny_registry: Path, tmp_path: Path) -> None:
    import shutil

    shutil.copytree(tiny_registry, tmp_path / "r")
    reg = Registry(tmp_path / "r")
    champion = reg.current("tiny")
    data = tmp_path / "d.csv"
    s = generate(streams=1, length=400, seed=9)[0]
    data.write_text(
        "timestamp,value\n" + "".join(f"{t},{v}\n" for t, v in zip(s.ts, s.values, strict=True))
    )
    job = TrainJob(
        data=(data,),
        registry=tmp_path / "r",
        model="tiny",
        promote="never",
        plot=False,
        progress=False,
    )
    outcome = Trainer(job, SMALL).run()
    assert not outcome.promoted
    assert reg.current("tiny") == champion
    assert outcome.version in reg.versions("tiny")


def test_a_warm_start_fine_tunes_the_champion_and_refuses_another_architecture(
    tmp_path: Path,
) -> None:
    """A refresh that starts from the champion's weights begins where the champion ended:
    after one epoch its validation loss is below that of one epoch from scratch."""
    from training.synthetic import write_csv

    data = tuple(write_csv(generate(streams=3, length=400, seed=11), tmp_path / "data"))
    job = TrainJob(data=data, registry=tmp_path / "models", model="m", plot=False, progress=False)
    first = Trainer(job, dataclasses.replace(SMALL, max_epochs=4)).run()
    assert (first.folder / "weights.pt").is_file()
    one = dataclasses.replace(SMALL, max_epochs=1)
    warm = Trainer(dataclasses.replace(job, warm_start=True, promote="never"), one).run()
    cold = Trainer(dataclasses.replace(job, promote="never"), one).run()
    assert warm.doc["warm_start_from"] == first.version
    assert cold.doc["warm_start_from"] is None
    assert warm.doc["fit"]["best_val_loss"] < cold.doc["fit"]["best_val_loss"]
    wider = dataclasses.replace(SMALL, hidden=12, max_epochs=1)
    other = Trainer(dataclasses.replace(job, warm_start=True, promote="never"), wider)
    assert other.run().doc["warm_start_from"] is None  # another shape: from scratch


def test_when_drift_skips_the_refresh_until_the_streams_change(
    tiny_registry: Path, tmp_path: Path
) -> None:
    import shutil

    from training.synthetic import write_csv

    registry = tmp_path / "models"
    shutil.copytree(tiny_registry, registry)
    champion = Registry(registry).current("tiny")
    # The champion's own kind of data: nothing drifted, the run is skipped.
    same = generate(streams=6, length=800, seed=3)
    job = TrainJob(
        data=tuple(write_csv(same, tmp_path / "same")), registry=registry, model="tiny",
        plot=False, progress=False, when="drift",
    )  # fmt: skip
    skipped = Trainer(job, SMALL).run()
    assert skipped.version is None and "no drift" in skipped.reason
    assert 0.5 < skipped.doc["drift_ratio"] < 1.3
    assert Registry(registry).current("tiny") == champion
    # The same streams, much noisier over their last 30%: the champion's recent error is
    # far above its validation error, and the refresh runs.
    rng = np.random.default_rng(0)
    changed = [
        dataclasses.replace(
            s, values=s.values + np.r_[np.zeros(560), rng.normal(0, 3 * s.values.std(), 240)]
        )
        for s in same
    ]
    job = dataclasses.replace(job, data=tuple(write_csv(changed, tmp_path / "changed")))
    refreshed = Trainer(job, SMALL).run()
    assert refreshed.version is not None
    assert refreshed.doc["validation"]["live_mae"] > 0
