"""``statecast score``: run the stateful scorer; ``score_argv`` builds its command line for child processes."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from pipeline.commands.flags import add_kafka_flags, flags

__all__ = ["add_parser", "run", "score_argv"]

log = logging.getLogger("statecast")


def score_argv(
    bootstrap: str,
    input_topic: str,
    output_topic: str,
    group: str,
    *extra: str,
    dlq_topic: str | None = None,
    backend: str | None = None,
) -> list[str]:
    """The command line of a `statecast score` child process (bench, demo, tests):
    this interpreter, the given topics and group (DLQ: ``<output>.dlq``), the Kafka
    backend if given, then ``extra``."""
    return [
        sys.executable,
        "-m",
        "pipeline.cli",
        "score",
        "--bootstrap",
        bootstrap,
        "--input-topic",
        input_topic,
        "--output-topic",
        output_topic,
        "--dlq-topic",
        dlq_topic or output_topic + ".dlq",
        "--group",
        group,
        *(("--backend", backend) if backend else ()),
        *extra,
    ]


def run(ns: argparse.Namespace) -> int:
    from pipeline.config import ScorerConfig, load
    from pipeline.scorer import Scorer, tune_gc

    config = load(ScorerConfig, flags(ns))
    scorer = Scorer(config)
    tune_gc()
    log.info(
        "scoring %s -> %s (group %s, models %s)",
        config.input_topic,
        config.output_topic,
        config.group,
        {m.name: m.version for m in scorer.models.values()},
    )
    code = scorer.run()
    log.info("scorer stopped after %d records", scorer.processed)
    return code


def add_parser(sub: Any) -> None:
    p = sub.add_parser("score", help="run the stateful scorer (Kafka consumer)")
    add_kafka_flags(p)
    p.add_argument("--input-topic", dest="input_topic")
    p.add_argument("--output-topic", dest="output_topic")
    p.add_argument("--dlq-topic", dest="dlq_topic")
    p.add_argument("--group")
    p.add_argument("--registry")
    p.add_argument("--model", help="default model (env STATECAST_MODEL)")
    p.add_argument(
        "--route",
        dest="routes",
        action="append",
        help="PREFIX=MODEL: streams whose id starts with PREFIX use MODEL (repeatable)",
    )
    p.add_argument("--metrics-port", dest="metrics_port", type=int)
    p.add_argument("--metrics-host", dest="metrics_host")
    p.add_argument(
        "--until-idle",
        dest="until_idle",
        type=float,
        help="exit 0 after this many seconds without input",
    )
    p.add_argument("--max-poll-records", dest="max_poll_records", type=int)
    p.add_argument("--state-ttl-s", dest="state_ttl_s", type=float)
    p.add_argument("--gap-reset-s", dest="gap_reset_s", type=float)
    p.add_argument("--late-tolerance-s", dest="late_tolerance_s", type=float)
    p.add_argument("--warmup-steps", dest="warmup_steps", type=int)
    p.add_argument(
        "--season-bins",
        dest="season_bins",
        type=int,
        help="bins of each stream's daily profile, 4..288 (default 288: 1.1 KB per stream and "
        "feature); 0: off, the model's forecast alone",
    )
    p.add_argument(
        "--guarantee",
        choices=["at-least-once", "exactly-once"],
        help="exactly-once: outputs, changelog and offsets in one Kafka transaction",
    )
    p.add_argument(
        "--model-topic",
        dest="model_topic",
        help="also follow models published on this compacted topic (e.g. statecast-models)",
    )
    p.add_argument(
        "--model-verify-key",
        dest="model_verify_key",
        help="Ed25519 public key (PEM): refuse models on the model topic not signed with it",
    )
    p.add_argument(
        "--max-streams",
        dest="max_streams",
        type=int,
        help="streams one served model may hold; new ones beyond go to the DLQ (capacity)",
    )
    p.add_argument(
        "--max-abs-value",
        dest="max_abs_value",
        type=float,
        help="values beyond +-this go to the DLQ (out_of_range); default 1e12",
    )
    p.add_argument(
        "--max-future-skew-s",
        dest="max_future_skew_s",
        type=float,
        help="events this far ahead of the clock go to the DLQ (implausible_ts); default 1 day",
    )
    p.add_argument(
        "--interval",
        dest="interval",
        type=float,
        help="probability of the forecast interval in score records; default 0.9",
    )
    p.add_argument(
        "--output-format",
        dest="output_format",
        choices=("json", "binary"),
        help="score records as JSON (default) or in the fixed binary layout of "
        "pipeline.kafka_io.binary_scores (cheaper to write, half the bytes)",
    )
    p.add_argument(
        "--shadow-promote-after",
        dest="shadow_promote_after",
        type=int,
        help="promote (or reject) the registry's SHADOW version after this many live events "
        "scored by both (`statecast models shadow VERSION`); default 0: never decide",
    )
    p.add_argument(
        "--shadow-margin",
        dest="shadow_margin",
        type=float,
        help="how much lower the shadow's live forecast error must be; default 0.02",
    )
    p.add_argument(
        "--rollback-after",
        dest="rollback_after",
        type=int,
        help="judge a new champion on its first N live events and roll it back if worse "
        "than the previous one by --rollback-margin; default 0: never",
    )
    p.add_argument("--rollback-margin", dest="rollback_margin", type=float, help="default 0.1")
    p.add_argument(
        "--instance-id",
        dest="instance_id",
        help="stable id of this scorer (exactly-once: one per process in the group; "
        "default: the host name)",
    )
    p.add_argument(
        "--commit-interval-s",
        dest="commit_interval_s",
        type=float,
        help="seconds between checkpoints (changelog + flush + commit); 0: every batch",
    )
    p.add_argument(
        "--poll-linger-ms",
        dest="poll_linger_ms",
        type=int,
        help="under light load, a poll-loop turn begins at least this long after the previous "
        "one (more events per turn, less CPU; adds at most this latency; default 10, 0: off)",
    )
    p.add_argument(
        "--changelog-frames-per-turn",
        dest="changelog_frames_per_turn",
        type=int,
        help="at-least-once: a checkpoint's changelog frames written per poll-loop turn "
        "(default 512)",
    )
    p.add_argument(
        "--no-changelog",
        dest="changelog",
        action="store_const",
        const=False,
        help="keep state in memory only (it is lost on restart)",
    )
    p.add_argument(
        "--state-dir",
        dest="state_dir",
        type=Path,
        help="local state snapshots here: a restart reads only the changelog written since "
        "the newest one (default: off, restores read the whole changelog)",
    )
    p.add_argument(
        "--snapshot-interval-s",
        dest="snapshot_interval_s",
        type=float,
        help="seconds between local snapshots (default 60)",
    )
    p.add_argument(
        "--standby",
        dest="standby",
        action="store_const",
        const=True,
        help="keep the local snapshots of the partitions this member does not own current "
        "(needs --state-dir): a failover onto it restores warm",
    )
    p.add_argument(
        "--standby-interval-s",
        dest="standby_interval_s",
        type=float,
        help="seconds between refreshes of the standby snapshots (default 60)",
    )
    # The scorer takes over a SIGTERM held since the process began (pipeline.stopping).
    p.set_defaults(func=run, holds_stop=True)
