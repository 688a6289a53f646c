"""The `statecast` command line: every subcommand parses its documented flags."""

from __future__ import annotations

import pytest

from pipeline.cli import build_parser


@pytest.mark.parametrize(
    "argv",
    [
        ["kafka", "up", "--port", "9999"],
        [
            "train",
            "--data",
            "x",
            "--registry",
            "r",
            "--model",
            "m",
            "--max-epochs",
            "3",
            "--promote",
            "auto",
            "--config",
            "c.json",
            "--every",
            "24h",
            "--metrics-port",
            "9109",
            "--metrics-file",
            "f",
            "--publish-topic",
            "t",
        ],
        ["train", "--from-kafka", "sensor-readings", "--since", "7d"],
        ["models", "promote", "v1", "--model", "m"],
        [
            "score",
            "--bootstrap",
            "h:1",
            "--input-topic",
            "a",
            "--output-topic",
            "b",
            "--dlq-topic",
            "c",
            "--group",
            "g",
            "--registry",
            "r",
            "--model",
            "m",
            "--metrics-port",
            "9108",
            "--until-idle",
            "5",
            "--guarantee",
            "exactly-once",
            "--route",
            "pump-=pumps",
        ],
        ["replay", "a.csv", "--rate", "100"],
        ["detect", "dir", "--output", "out"],
        ["generate", "--out", "d"],
        ["demo"],
    ],
)
def test_subcommands_parse(argv: list[str]) -> None:
    ns = build_parser().parse_args(argv)
    assert callable(ns.func)
    # Every attribute a handler reads exists on the namespace (no AttributeError at run time).
    if argv[0] == "train":
        assert {"metrics_port", "metrics_host", "metrics_file", "every", "publish_topic"} <= set(
            vars(ns)
        )


def test_a_held_stop_request_terminates_a_command_that_does_not_take_it_over() -> None:
    """pipeline.stopping: a SIGTERM noted while held terminates the process as soon as the
    default handling is back (every command but the scorer)."""
    import signal
    import subprocess
    import sys

    code = (
        "import os, signal\n"
        "from pipeline import stopping\n"
        "stopping.hold()\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "print('held', stopping.requested(), flush=True)\n"
        "stopping.release()\n"
        "print('survived', flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert done.stdout.decode().split() == ["held", "True"]
    assert done.returncode == -signal.SIGTERM
