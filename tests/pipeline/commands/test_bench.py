"""`statecast bench`'s latency run against the real broker."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from pipeline.commands.bench import BenchOptions, _measure_latency
from pipeline.config import KafkaConfig

pytestmark = pytest.mark.integration


def test_a_latency_run_whose_scorer_fails_names_its_exit_and_its_log(
    kafka_config: KafkaConfig, tmp_path: Path
) -> None:
    """A scorer that cannot start (no model in its registry) leaves no scores: the error
    says so with the scorer's exit code and the end of its log, where the operator reads
    why, instead of only that no scores came."""
    opts = BenchOptions(
        kafka=kafka_config, registry=tmp_path, model="absent", streams=10, latency_seconds=0.5
    )
    with pytest.raises(RuntimeError) as failed:
        _measure_latency(opts, 100.0, uuid.uuid4().hex[:8], kafka_config.backend)
    message = str(failed.value)
    assert "the scorer exited with 2" in message
    assert "model 'absent' has no promoted version" in message
