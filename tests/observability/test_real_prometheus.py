"""A real Prometheus (Debian's package) scrapes a running scorer and trainer; every PromQL
expression of the dashboards and the rules parses and finds data after a short feed."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.config import KafkaConfig, ScorerConfig
from pipeline.kafka_io.codec import encode_event
from tests.kafka_helpers import ScorerThread, produce
from tests.observability.daemons import free_port, get, query
from training.config import TrainConfig
from training.schedule import TrainerMetrics, run_periodically
from training.synthetic import generate, write_csv
from training.trainer import Trainer, TrainJob

pytestmark = [pytest.mark.integration, pytest.mark.alerting]

REPO = Path(__file__).resolve().parents[2]
# Events every 10 minutes: the 500 steps span 83 hours, so that input drift (compared over
# whole days from a stream's second day on, every 2,000 events) has a value for its
# dashboard panel.
STEP = 600


def _dashboard_expressions() -> list[str]:
    spec = importlib.util.spec_from_file_location("dashboards", REPO / "grafana/dashboards.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    exprs: list[str] = mod.expressions()
    return exprs


def _rule_expressions() -> list[str]:
    doc = yaml.safe_load((REPO / "prometheus/statecast.rules.yml").read_text())
    return [rule["expr"] for group in doc["groups"] for rule in group["rules"]]


def test_dashboards_and_rules_query_real_data(
    kafka_config: KafkaConfig,
    tiny_registry: Path,
    topic_factory: Callable[..., str],
    group_factory: Callable[[], str],
    tmp_path: Path,
    prometheus: Callable[[dict[str, int]], str],
) -> None:
    registry = tmp_path / "models"
    shutil.copytree(tiny_registry, registry)
    # A trainer with its metrics endpoint (as `statecast train --every 24h --metrics-port P`).
    trainer_metrics = TrainerMetrics()
    trainer_port = free_port()
    server, _ = __import__("prometheus_client").start_http_server(
        trainer_port, addr="127.0.0.1", registry=trainer_metrics.registry
    )
    data = write_csv(generate(streams=2, length=300, seed=11), tmp_path / "data")
    job = TrainJob(data=tuple(data), registry=registry, model="tiny", plot=False, progress=False)
    small = TrainConfig(
        hidden=16, layers=2, horizon=3, max_epochs=1, segment=128, bptt=32, burn_in=8
    )

    def once(metrics: TrainerMetrics) -> int:
        metrics.record(Trainer(job, small).run().doc["champion_comparison"])
        return 0

    run_periodically(once, None, metrics=trainer_metrics)

    # A scorer with metrics, fed a stream with a spike and some bad records.
    inp = topic_factory("in", partitions=2)
    scorer_port = free_port()
    config = ScorerConfig(
        kafka=kafka_config,
        input_topic=inp,
        output_topic=inp + ".out",
        dlq_topic=inp + ".dlq",
        group=group_factory(),
        registry=registry,
        model="tiny",
        metrics_port=scorer_port,
        model_check_s=1.0,
    )
    runner = ScorerThread(config).start()
    base = prometheus({"statecast-scorer": scorer_port, "statecast-trainer": trainer_port})
    try:
        rng = np.random.default_rng(0)
        for chunk in range(5):
            events: list[tuple[bytes | None, bytes]] = []
            for t in range(chunk * 100, (chunk + 1) * 100):
                for s in range(10):
                    v = 20 + np.sin(t / 10) + rng.normal(0, 0.1) + (60 if t == 350 else 0)
                    events.append(
                        (
                            f"s{s}".encode(),
                            encode_event(f"s{s}", 1_764_000_000 + STEP * t, float(v)),
                        )
                    )
            events += [(None, b"garbage"), (b"s0", b'{"stream_id": "s0"}')]
            produce(kafka_config, inp, events)
            time.sleep(2)
        # An operator promotes a broken file: the scorer refuses it, the alert fires.
        current = (registry / "tiny" / "CURRENT").read_text().strip()
        (registry / "tiny" / "broken").mkdir()
        doc = json.loads((registry / "tiny" / current / "model.json").read_text())
        (registry / "tiny" / "broken" / "model.json").write_text(
            json.dumps({**doc, "version": "broken"})
        )
        (registry / "tiny" / "broken" / "model.onnx").write_bytes(b"junk")
        (registry / "tiny" / "CURRENT").write_text("broken\n")
        time.sleep(6)

        targets = get(f"{base}/api/v1/targets")["data"]["activeTargets"]
        assert {t["health"] for t in targets} == {"up"}, targets

        missing = _dashboard_expressions()
        deadline = time.monotonic() + 20  # scrapes and rule evaluations run every second
        while missing and time.monotonic() < deadline:
            still = []
            for expr in missing:
                res = query(base, expr)
                assert res["status"] == "success", (expr, res)
                if not res["data"]["result"]:
                    still.append(expr)
            missing = still
            time.sleep(1)
        assert not missing, f"dashboard expressions without data: {missing}"

        for expr in _rule_expressions():
            res = query(base, expr)
            assert res["status"] == "success", (expr, res)
            for name in set(re.findall(r"\b(statecast_[a-z_]+|up)\b", expr)):
                found = query(base, f'count({{__name__="{name}"}})')
                assert found["data"]["result"], f"rule {expr!r} uses {name}, which has no data"
        alerts = query(base, 'ALERTS{alertname="StatecastModelRefused", alertstate="firing"}')
        assert alerts["data"]["result"], "the refused model did not fire StatecastModelRefused"
        # /healthz and /readyz
        for path, expected in (("/healthz", b"ok\n"), ("/readyz", b"ready\n")):
            with urllib.request.urlopen(f"http://127.0.0.1:{scorer_port}{path}", timeout=5) as resp:
                assert resp.status == 200 and resp.read() == expected
    finally:
        runner.stop()
        server.shutdown()
        server.server_close()
