"""A member the group dropped must not commit its open transaction: the broker accepts a
dropped member's transactional offset commit (tests/pipeline/kafka_io/test_lost_commit.py),
so exactly-once would let its outputs and offsets commit beside the partitions' new
owner's. Lost partitions abort the transaction (the loop recovers); revoked ones commit it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import KafkaConfig, ScorerConfig
from pipeline.errors import KafkaError
from pipeline.kafka_io import TopicPartition
from pipeline.scorer import Scorer


def _scorer(registry: Path, guarantee: str) -> Scorer:
    return Scorer(
        ScorerConfig(
            registry=registry, model="tiny", kafka=KafkaConfig(bootstrap="x:1"), guarantee=guarantee
        )
    )


@pytest.mark.parametrize("lost", [True, False], ids=["lost", "revoked"])
def test_under_exactly_once_lost_partitions_abort_the_open_transaction_revoked_ones_commit_it(
    tiny_registry: Path, monkeypatch: pytest.MonkeyPatch, lost: bool
) -> None:
    scorer = _scorer(tiny_registry, "exactly-once")
    committed: list[bool] = []
    monkeypatch.setattr(scorer, "checkpoint", lambda **_: committed.append(True))
    scorer.checkpointer.in_txn = True
    handler = scorer._on_lost if lost else scorer._on_revoke
    handler({TopicPartition("in", 0), TopicPartition("in", 2)})
    if lost:
        assert committed == []
        assert isinstance(scorer._failure, KafkaError)
        assert "partitions [0, 2] lost" in str(scorer._failure)
    else:
        assert committed == [True]
        assert scorer._failure is None


def test_lost_partitions_are_revoked_alike_under_at_least_once(tiny_registry: Path) -> None:
    scorer = _scorer(tiny_registry, "at-least-once")
    scorer._on_lost({TopicPartition("in", 0)})
    assert scorer._failure is None
