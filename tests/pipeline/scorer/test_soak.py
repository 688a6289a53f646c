"""Soak (slow): a steady feed over 100k streams with TTL eviction on; the scorer's memory
must stay flat. Runnable by hand:

    STATECAST_SOAK_SECONDS=900 .venv/bin/pytest -m slow tests/pipeline/test_soak.py -s

It prints the RSS curve (one sample every 10 s) and writes it to ``reports/soak-rss.csv``.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pipeline.commands.score import score_argv
from pipeline.config import KafkaConfig
from pipeline.kafka_io import open_producer
from pipeline.kafka_io.codec import encode_event

SOAK_SECONDS = float(os.environ.get("STATECAST_SOAK_SECONDS", "900"))
pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.timeout(int(SOAK_SECONDS) + 600),
]

REPO = Path(__file__).resolve().parents[3]


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def test_memory_stays_flat_under_churn(
    kafka_config: KafkaConfig,
    topic_factory: Callable[..., str],
    group_factory: Callable[[], str],
) -> None:
    seconds = SOAK_SECONDS
    streams, rate = 100_000, 4000.0
    inp = topic_factory("soak-in", partitions=4)
    out = topic_factory("soak-out", partitions=4)
    scorer = subprocess.Popen(
        score_argv(
            kafka_config.bootstrap,
            inp,
            out,
            group_factory(),
            "--state-ttl-s",
            str(seconds / 6),
            "--until-idle",
            "15",
        ),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    stop = threading.Event()

    def feed() -> None:
        # Active streams rotate: every phase uses a new window of 100k ids, so evicted
        # streams are replaced by new ones and the store would grow without the TTL.
        producer = open_producer(kafka_config, linger_ms=20)
        rng = np.random.default_rng(0)
        started, i = time.monotonic(), 0
        while not stop.is_set() and time.monotonic() - started < seconds:
            phase = int((time.monotonic() - started) / (seconds / 6))
            sid = f"soak-{phase}-{int(rng.integers(streams))}"
            producer.send(
                inp, sid.encode(), encode_event(sid, time.time(), float(rng.normal(20, 2)))
            )
            i += 1
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        producer.flush()
        producer.close()

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    samples: list[tuple[float, int]] = []
    t0 = time.monotonic()
    while feeder.is_alive():
        samples.append((time.monotonic() - t0, _rss(scorer.pid)))
        print(f"t={samples[-1][0]:6.0f}s rss={samples[-1][1] / 2**20:7.1f} MiB", flush=True)
        feeder.join(10)
    stop.set()
    _, err = scorer.communicate(timeout=300)
    assert scorer.returncode == 0, err.decode()[-2000:]
    assert b"Traceback" not in err and b"ERROR" not in err, err.decode()[-2000:]
    (REPO / "reports").mkdir(exist_ok=True)
    (REPO / "reports/soak-rss.csv").write_text(
        "seconds,rss_bytes\n" + "".join(f"{t:.0f},{r}\n" for t, r in samples)
    )
    # Flat: after the first third (state has reached its TTL-bounded size), RSS grows < 15%.
    settled = [r for t, r in samples if t > seconds / 3]
    assert settled and max(settled) < 1.15 * settled[0], samples
