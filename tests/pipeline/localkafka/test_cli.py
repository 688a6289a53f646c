"""`statecast kafka up|down|status` as a user runs it, on its own ports."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.localkafka.broker import _is_broker_pid
from tests.kafka_helpers import free_port_pair

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]


def _statecast(*args: str, env_port: int, data_dir: Path) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable,
        "-m",
        "pipeline.cli",
        "kafka",
        *args,
        "--port",
        str(env_port),
        "--controller-port",
        str(env_port + 1),
        "--data-dir",
        str(data_dir),
        "--home",
        str(REPO / ".statecast"),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=REPO, check=False)


def test_up_twice_starts_one_broker_and_down_leaves_none(tmp_path: Path) -> None:
    port = free_port_pair()
    first = _statecast("up", env_port=port, data_dir=tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"bootstrap=127.0.0.1:{port}" in first.stdout
    pid = int((tmp_path / "broker.pid").read_text())
    try:
        second = _statecast("up", env_port=port, data_dir=tmp_path)
        assert second.returncode == 0, second.stderr
        assert int((tmp_path / "broker.pid").read_text()) == pid
        status = _statecast("status", env_port=port, data_dir=tmp_path)
        assert status.returncode == 0 and f"running (pid {pid})" in status.stdout
    finally:
        down = _statecast("down", env_port=port, data_dir=tmp_path)
    assert down.returncode == 0
    assert not _is_broker_pid(pid)
    status = _statecast("status", env_port=port, data_dir=tmp_path)
    assert status.returncode == 3 and "not running" in status.stdout


def test_port_taken_gives_one_clear_error_and_nonzero_exit(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        result = _statecast("up", env_port=port, data_dir=tmp_path)
    assert result.returncode != 0
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert f"port 127.0.0.1:{port} is taken" in lines[0] and "log:" in lines[0]


def test_cluster_ids_never_look_like_an_option() -> None:
    """Kafka's storage tool reads a cluster id starting with "-" as an option and refuses
    to format (it failed 1 start in 64 before the guard)."""
    from pipeline.localkafka.broker import _cluster_id

    ids = [_cluster_id() for _ in range(5000)]
    assert not any(i.startswith("-") for i in ids)
    assert {len(i) for i in ids} == {22} and len(set(ids)) == len(ids)
