"""docker-compose.yml is a complete, consistent stack (parsed as YAML: no Docker engine here)."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def test_compose_has_the_whole_stack_and_its_files_exist() -> None:
    doc = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = doc["services"]
    assert {"kafka", "scorer", "trainer", "prometheus", "alertmanager", "grafana", "feed"} <= set(
        services
    )
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    assert (
        "container_name" not in services["scorer"] and "ports" not in services["scorer"]
    )  # scalable
    assert "--every" in services["trainer"]["command"]
    for svc in services.values():
        for volume in svc.get("volumes", []):
            src = volume.split(":", 1)[0]
            if src.startswith("./"):
                assert (REPO / src).exists(), f"{src} is mounted but missing"
    prom = yaml.safe_load((REPO / "prometheus/prometheus.yml").read_text())
    assert {j["job_name"] for j in prom["scrape_configs"]} == {
        "statecast-scorer",
        "statecast-trainer",
    }
    assert yaml.safe_load((REPO / "prometheus/alertmanager.yml").read_text())["route"]["receiver"]
    assert services["grafana"]["environment"]["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
