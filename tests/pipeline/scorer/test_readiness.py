"""Readiness tells the truth: not ready while an assigned partition restores, nor after a
Kafka failure dropped the state, until the restore that follows is done."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import KafkaConfig, ScorerConfig
from pipeline.kafka_io import TopicPartition
from pipeline.scorer import Scorer


def _ready(scorer: Scorer) -> float:
    value = scorer.metrics.registry.get_sample_value("statecast_ready")
    assert value is not None
    return value


def test_not_ready_while_a_new_assignment_waits_for_its_restore(tiny_registry: Path) -> None:
    scorer = Scorer(
        ScorerConfig(registry=tiny_registry, model="tiny", kafka=KafkaConfig(bootstrap="x:1"))
    )
    scorer._mark_ready()
    assert _ready(scorer) == 1
    scorer._on_assign({TopicPartition("in", 0)})
    assert _ready(scorer) == 0
    scorer._mark_ready()  # a poll returned, but the restore has not run yet
    assert _ready(scorer) == 0
    scorer._pending_restore.clear()  # what the loop does once the restore is done
    scorer._mark_ready()
    assert _ready(scorer) == 1


def test_not_ready_after_a_kafka_failure(tiny_registry: Path) -> None:
    from pipeline.errors import KafkaError

    scorer = Scorer(
        ScorerConfig(registry=tiny_registry, model="tiny", kafka=KafkaConfig(bootstrap="x:1"))
    )
    scorer._mark_ready()
    scorer._stop.set()  # no backoff wait in the test
    scorer._recover(KafkaError("broker gone"), attempt=0)
    assert _ready(scorer) == 0
    assert scorer.metrics.registry.get_sample_value("statecast_kafka_errors_total") == 1
    assert scorer.metrics.registry.get_sample_value("statecast_commit_failures_total") == 0
