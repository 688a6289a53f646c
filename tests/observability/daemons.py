"""Helpers for the observability tests: ports, the Prometheus HTTP API, daemons a test
starts and stops, and a webhook receiver standing in for the pager."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

RULES = Path(__file__).resolve().parents[2] / "prometheus/statecast.rules.yml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        doc: dict[str, Any] = json.loads(resp.read())
    return doc


def query(base: str, expr: str) -> dict[str, Any]:
    return get(f"{base}/api/v1/query?query={urllib.parse.quote(expr)}")


class Daemons:
    """Processes started by a test, stopped after it; logs kept for failure messages."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, argv: list[str], ready_url: str) -> None:
        log_path = self.tmp_path / f"{name}.log"
        with open(log_path, "wb") as log:
            self.procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(ready_url, timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"{name} did not become ready:\n{log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
            proc.wait(20)


class Webhook:
    """An HTTP receiver for Alertmanager's webhook notifications (JSON, version 4)."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        received = self.notifications

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self, alertname: str, status: str) -> list[dict[str, Any]]:
        """Every alert of that name and status (firing, resolved) delivered so far."""
        return [
            a
            for n in list(self.notifications)
            for a in n["alerts"]
            if a["status"] == status and a["labels"].get("alertname") == alertname
        ]

    def firing(self, alertname: str) -> list[dict[str, Any]]:
        return self.alerts(alertname, "firing")

    def resolved(self, alertname: str) -> bool:
        return bool(self.alerts(alertname, "resolved"))

    def last_status(self, alertname: str) -> str | None:
        """The status (firing, resolved) of that alert's latest notification, if any: an
        alert that flapped was resolved once and may be firing again."""
        got = [a["status"] for n in list(self.notifications) for a in n["alerts"]
               if a["labels"].get("alertname") == alertname]  # fmt: skip
        return got[-1] if got else None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
