"""docker-compose.yml is a complete, consistent stack (parsed as YAML: no Docker engine here)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from pipeline.cli import build_parser

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


def _statecast_argvs(services: dict[str, dict[str, object]]) -> dict[str, list[list[str]]]:
    """Every `statecast ...` command line of every service (also inside `sh -c`)."""
    out: dict[str, list[list[str]]] = {}
    for name, svc in services.items():
        cmd = svc.get("command")
        if not isinstance(cmd, list):
            continue
        if cmd[:2] == ["sh", "-c"]:
            parts = [shlex.split(p) for p in str(cmd[2]).split("&&")]
        else:
            parts = [[str(c) for c in cmd]]
        argvs = [p[1:] for p in parts if p and p[0] == "statecast"]
        if argvs:
            out[name] = argvs
    return out


def test_every_compose_command_parses_with_the_cli_parser() -> None:
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    argvs = _statecast_argvs(services)
    assert {"scorer", "trainer", "feed"} <= set(argvs)
    parser = build_parser()
    for name, lines in argvs.items():
        for argv in lines:
            try:
                parser.parse_args(argv)
            except SystemExit:
                pytest.fail(f"service {name}: `statecast {' '.join(argv)}` does not parse")


def test_compose_does_not_expose_unauthenticated_admin_endpoints() -> None:
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    assert "--web.enable-lifecycle" not in services["prometheus"]["command"]
    for name in ("prometheus", "alertmanager", "grafana"):
        for port in services[name].get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_trainer_retries_a_failed_first_run_soon() -> None:
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    assert "--retry" in services["trainer"]["command"]


def test_the_scorer_image_does_not_carry_torch() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    assert services["scorer"]["build"]["target"] == "scorer"
    assert services["trainer"]["build"]["target"] == "trainer"
    scorer_stage = dockerfile.split("AS trainer")[0]
    assert "train" not in scorer_stage.split("pip install", 1)[1].split("\n")[0]
