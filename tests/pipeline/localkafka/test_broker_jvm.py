"""The local broker's JVM runs G1 with Kafka's own start-script options and the configured
pause-time goal, and logs its pauses (gc.log: what a latency tail's broker side was)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.localkafka import LocalBroker

pytestmark = pytest.mark.integration


def test_the_broker_runs_with_its_collector_settings_and_logs_its_pauses(
    broker: LocalBroker,
) -> None:
    pid = broker.pid()
    assert pid is not None
    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    goal = f"-XX:MaxGCPauseMillis={broker.config.gc_pause_target_ms}".encode()
    assert goal in args
    assert b"-XX:InitiatingHeapOccupancyPercent=35" in args
    # The JVM opens its GC log at start and writes the collector it chose first.
    assert "Using G1" in broker.gc_log_path.read_text()
