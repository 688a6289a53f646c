"""`statecast detect`'s reading of the scores back from Kafka."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pipeline.commands.detect import _read_outputs
from pipeline.config import KafkaConfig
from pipeline.errors import KafkaError

pytestmark = pytest.mark.integration


def test_scores_of_an_output_topic_that_was_never_created_are_a_clear_error(
    kafka_config: KafkaConfig, unique_name: Callable[[str], str]
) -> None:
    """A scorer that never created its output topic: the operator reads which topic and
    how many scores were expected, not kafka-python's "No partitions are currently
    assigned" ValueError."""
    topic = unique_name("never-created")
    with pytest.raises(KafkaError, match=f"expected 5 scores in {topic}, but the topic does"):
        _read_outputs(kafka_config, topic, 5)
