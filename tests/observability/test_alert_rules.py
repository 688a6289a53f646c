"""Alert rules: promtool validates them and runs the unit tests (every alert fires and
stays quiet); the committed dashboards are what grafana/dashboards.py generates."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.alerting

REPO = Path(__file__).resolve().parents[2]
PROMTOOL = shutil.which("promtool")


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL, "promtool missing: `make setup` installs Debian's prometheus package"
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, cwd=REPO, check=False)


def test_rules_are_valid() -> None:
    proc = _promtool("check", "rules", "prometheus/statecast.rules.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 15 rules found" in proc.stdout


def test_every_alert_has_unit_tests_that_pass() -> None:
    proc = _promtool("test", "rules", "prometheus/tests/statecast.test.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rules = (REPO / "prometheus/statecast.rules.yml").read_text()
    tests = (REPO / "prometheus/tests/statecast.test.yml").read_text()
    alerts = [
        line.split(":", 1)[1].strip()
        for line in rules.splitlines()
        if line.strip().startswith("- alert:")
    ]
    assert len(alerts) == 15
    for alert in alerts:
        # each alert is tested firing (exp_alerts with labels) and quiet (exp_alerts: [])
        block = [t for t in tests.split("alertname: ")[1:] if t.startswith(alert + "\n")]
        assert any("exp_alerts: []" in b.split("alertname:")[0][:80] for b in block), alert
        assert any("exp_labels" in b for b in block), alert


def test_rules_have_runbooks_in_the_docs() -> None:
    docs = (REPO / "docs/operations.md").read_text().lower()
    rules = (REPO / "prometheus/statecast.rules.yml").read_text()
    for line in rules.splitlines():
        if line.strip().startswith("- alert:"):
            name = line.split(":", 1)[1].strip()
            assert f"### {name.lower()}" in docs, f"no runbook section for {name}"


def test_committed_dashboards_match_their_code() -> None:
    spec = importlib.util.spec_from_file_location("dashboards", REPO / "grafana/dashboards.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for name, text in mod.render().items():
        committed = (REPO / "grafana/dashboards" / name).read_text()
        assert committed == text, (
            f"grafana/dashboards/{name} is stale: run python grafana/dashboards.py"
        )
        doc = json.loads(committed)
        assert all(
            t["datasource"]["uid"] == "statecast-prometheus"
            for p in doc["panels"]
            for t in p["targets"]
        )
