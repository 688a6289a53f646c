"""Peak resident memory of a scorer process at two stream counts, with and without the
changelog: what the RSS slope of ``statecast bench`` is made of.

    .venv/bin/python benchmarks/scorer_rss.py --bootstrap 127.0.0.1:9092 \\
        [--streams 2000,20000] [--events 60000] [--backend confluent-kafka]

For each stream count, one topic filled as ``statecast bench`` fills it (``--events``
events over the streams, JSON), then a `statecast score` process over it with the
changelog and one without (``--no-changelog``), each under ``/usr/bin/time -v`` (its peak
RSS). Prints the peaks and, per way, the slope between the two counts in bytes per
stream, as the bench's ``rss_per_stream_bytes`` is computed.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.commands.bench import LOG_APPEND, BenchOptions, _fill  # noqa: E402
from pipeline.commands.score import score_argv  # noqa: E402
from pipeline.config import KafkaConfig  # noqa: E402
from pipeline.kafka_io import ensure_topic  # noqa: E402


def peak_mib(argv: list[str]) -> float:
    done = subprocess.run(
        ["/usr/bin/time", "-v", *argv], capture_output=True, text=True, cwd=REPO, check=True
    )
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    if found is None:
        raise RuntimeError("no peak RSS in /usr/bin/time's report")
    return int(found.group(1)) / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--backend", default="confluent-kafka")
    ap.add_argument("--streams", default="2000,20000")
    ap.add_argument("--events", type=int, default=60_000)
    a = ap.parse_args()
    kafka = KafkaConfig(bootstrap=a.bootstrap, backend=a.backend)
    opts = BenchOptions.quick(kafka)
    low, high = (int(s) for s in a.streams.split(","))
    peaks: dict[tuple[int, bool], float] = {}
    for streams in (low, high):
        tag = uuid.uuid4().hex[:8]
        inp = f"scorer-rss-{tag}"
        ensure_topic(kafka, inp, opts.partitions, LOG_APPEND)
        _fill(opts, inp, a.events, streams)
        for changelog in (True, False):
            argv = score_argv(
                a.bootstrap, inp, f"{inp}-out-{int(changelog)}", f"{inp}-{int(changelog)}",
                "--registry", str(REPO / "exported_models"), "--model", "default",
                "--until-idle", "3", *(() if changelog else ("--no-changelog",)),
                backend=a.backend,
            )  # fmt: skip
            peaks[(streams, changelog)] = peak_mib(argv)
            way = "with the changelog" if changelog else "without it"
            print(
                f"{streams:>9,} streams, {way:<19} peak RSS {peaks[(streams, changelog)]:7.1f} MiB"
            )
    for changelog in (True, False):
        slope = (peaks[(high, changelog)] - peaks[(low, changelog)]) * 2**20 / (high - low)
        way = "with the changelog" if changelog else "without it"
        print(f"slope {low:,} -> {high:,} streams, {way:<19} {slope:7,.0f} bytes per stream")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
