"""Real Prometheus and Alertmanager (Debian's packages) for the observability tests, and a
webhook receiver standing in for the pager: what Alertmanager delivers, the test reads."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.observability.daemons import RULES, Daemons, Webhook, free_port

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    d = Daemons(tmp_path)
    yield d
    d.stop()


@pytest.fixture
def prometheus(tmp_path: Path, daemons: Daemons) -> Callable[..., str]:
    """``start(targets, rules=RULES, alertmanager=None) -> base URL``: scrapes and
    evaluates every second; sends alerts to ``alertmanager`` (host:port) if given."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus missing: `make setup` installs Debian's prometheus package"

    def start(targets: dict[str, int], rules: Path = RULES, alertmanager: str | None = None) -> str:
        port = free_port()
        config: dict[str, Any] = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{p}"]}]}
                for job, p in targets.items()
            ],
        }
        if alertmanager:
            config["alerting"] = {
                "alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]
            }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        base = f"http://127.0.0.1:{port}"
        daemons.start(
            "prometheus",
            [
                binary,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--rules.alert.resend-delay=1s",
            ],
            f"{base}/-/ready",
        )
        return base

    return start


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


@pytest.fixture
def alertmanager(tmp_path: Path, daemons: Daemons) -> Callable[[str], str]:
    """``start(webhook_url) -> host:port``: Debian's Alertmanager routing the project's
    alerts (prometheus/alertmanager.yml's grouping, waits shortened) to one webhook."""
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    assert binary, (
        "alertmanager missing: `make setup` installs Debian's prometheus-alertmanager package"
    )

    def start(webhook_url: str) -> str:
        shipped = yaml.safe_load((REPO / "prometheus/alertmanager.yml").read_text())
        route = {**shipped["route"], "group_wait": "1s", "group_interval": "1s"}
        receivers = [
            {"name": r["name"], "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}
            for r in shipped["receivers"]
        ]
        (tmp_path / "alertmanager.yml").write_text(
            yaml.safe_dump({"route": route, "receivers": receivers})
        )
        port = free_port()
        daemons.start(
            "alertmanager",
            [
                binary,
                f"--config.file={tmp_path / 'alertmanager.yml'}",
                f"--storage.path={tmp_path / 'alertmanager'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",  # one instance: no gossip port
            ],
            f"http://127.0.0.1:{port}/-/ready",
        )
        return f"127.0.0.1:{port}"

    return start
