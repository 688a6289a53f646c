"""Frozen, validated configuration objects, and the one place that reads the environment.

Every process (scorer, trainer, local broker, bench) builds exactly one config
object at start-up with :func:`load`, which merges, field by field and in this
order of precedence:

1. a command-line flag (a value that is not ``None`` in ``flags``),
2. an environment variable ``STATECAST_<FIELD>`` (upper case),
3. a value from a config file, where the process takes one,
4. the field's default.

Nested configs (e.g. ``ScorerConfig.kafka``) are loaded from the same sources
with the same rule, so ``STATECAST_BOOTSTRAP`` reaches every process that talks
to Kafka. Nothing else in Statecast reads ``os.environ``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pipeline.errors import ConfigError

__all__ = [
    "BACKENDS",
    "DEFAULT_BOOTSTRAP",
    "ENV_PREFIX",
    "KafkaConfig",
    "LocalKafkaConfig",
    "ModelsConfig",
    "ScorerConfig",
    "explicit_bootstrap",
    "load",
]

ENV_PREFIX = "STATECAST_"
BACKENDS = ("kafka-python", "confluent-kafka")
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"

T = TypeVar("T")


def _positive(name: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{name} must be > 0, got {value!r}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class KafkaConfig:
    """How clients reach the broker (security settings pass through to the client)."""

    bootstrap: str = DEFAULT_BOOTSTRAP
    backend: str = "kafka-python"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    request_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not self.bootstrap or ":" not in self.bootstrap:
            raise ConfigError(f"bootstrap must be HOST:PORT[,HOST:PORT...], got {self.bootstrap!r}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if (
            self.backend == "confluent-kafka"
            and importlib.util.find_spec("confluent_kafka") is None
        ):
            raise ConfigError(
                "backend 'confluent-kafka' needs the confluent extra: "
                "pip install 'statecast[confluent]' (or use --backend kafka-python)"
            )
        allowed = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
        if self.security_protocol not in allowed:
            raise ConfigError(f"security_protocol must be one of {allowed}")
        _positive("request_timeout_s", self.request_timeout_s)


@dataclasses.dataclass(frozen=True, kw_only=True)
class LocalKafkaConfig:
    """The managed single-node KRaft broker (`statecast kafka up|down|status`)."""

    home: Path = Path(".statecast")
    kafka_version: str = "4.1.1"
    host: str = "127.0.0.1"
    port: int = 9092
    controller_port: int = 9093
    data_dir: Path | None = None
    heap_mb: int = 512
    # G1's pause-time goal: its default, 200. Kafka's own start script asks for 20; on
    # two cores shared with the scorer and the load that made the collections shorter
    # but more frequent and the machine busier, and the latency no better
    # (benchmarks/broker_gc.py; docs/benchmarks.md, "The broker's collector").
    gc_pause_target_ms: int = 200
    start_timeout_s: float = 120.0
    stop_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        for name in ("port", "controller_port"):
            value = getattr(self, name)
            if not 0 < value < 65536:
                raise ConfigError(f"{name} must be a TCP port (1-65535), got {value}")
        if self.port == self.controller_port:
            raise ConfigError("port and controller_port must differ")
        _positive("heap_mb", self.heap_mb)
        _positive("gc_pause_target_ms", self.gc_pause_target_ms)
        _positive("start_timeout_s", self.start_timeout_s)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def resolved_data_dir(self) -> Path:
        """Where logs, metadata and the pid file live; one folder per port by default."""
        return self.data_dir if self.data_dir is not None else self.home / f"kafka-{self.port}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScorerConfig:
    """Everything one `statecast score` process needs."""

    kafka: KafkaConfig = dataclasses.field(default_factory=KafkaConfig)
    input_topic: str = "sensor-readings"
    output_topic: str = "sensor-scores"
    dlq_topic: str = "sensor-readings.dlq"
    group: str = "statecast-scorer"
    registry: Path = Path("exported_models")
    model: str = "default"
    routes: tuple[str, ...] = ()
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    until_idle: float | None = None
    max_poll_records: int = 2000
    poll_timeout_ms: int = 200
    # Under light load a poll-loop turn begins at least this long after the previous one
    # (pipeline.scorer.scorer.Scorer._poll): a turn costs ~3 ms whatever its size, and a
    # loop that scored every record as it came spent a core on 2,000 events/s
    # (docs/benchmarks.md, "a loop turn's cost"). 0: score each poll's records at once.
    poll_linger_ms: int = 10
    state_capacity: int = 16384
    state_ttl_s: float = 7 * 24 * 3600.0
    gap_reset_s: float = 24 * 3600.0
    max_message_bytes: int = 65536
    warmup_steps: int = 48
    replay_steps: int = 64
    # Bins of each stream's daily profile (pipeline.engine.season): 2 bytes per bin and
    # feature per stream in memory (float16); 0 turns the profile off (the model's forecast alone).
    season_bins: int = 288
    late_tolerance_s: float = 0.0
    input_partitions: int = 4
    guarantee: str = "at-least-once"
    commit_interval_s: float = 1.0
    # At-least-once: a checkpoint's changelog frames written per poll-loop turn
    # (pipeline.scorer.checkpoint, 4b): fewer, shorter pauses of the loop.
    changelog_frames_per_turn: int = 512
    # After a model swap, streams not used since rebuilt per poll-loop turn (the others
    # as they are used: pipeline.engine.serving, step 4; 128 against 512: a lower tail
    # while they are rebuilt, docs/benchmarks.md).
    swap_rebuild_per_turn: int = 128
    instance_id: str | None = None
    model_topic: str | None = None
    model_topic_check_s: float = 30.0
    model_verify_key: Path | None = None  # Ed25519 public key (PEM): refuse unsigned models
    changelog: bool = True
    min_compaction_lag_ms: int = 60_000  # pipeline.kafka_io.changelog.topic_config
    # Local state snapshots (pipeline.scorer.local_state): a restart reads only the
    # changelog's tail after the newest one. None: off (restores read the whole changelog).
    state_dir: Path | None = None
    snapshot_interval_s: float = 60.0
    # Standby snapshots (pipeline.scorer.standby): keep the local snapshots of the
    # partitions this member does not own current, every standby_interval_s, so that a
    # failover onto it restores warm. Needs state_dir.
    standby: bool = False
    standby_interval_s: float = 60.0
    model_check_s: float = 5.0
    intra_op_threads: int = 1
    # Bounds that keep one producer's records from stopping or poisoning the scorer.
    max_abs_value: float = 1e12  # |value| beyond this: dead letter `out_of_range`
    max_future_skew_s: float = 24 * 3600.0  # ts later than now + this: `implausible_ts`
    max_streams: int = 2_000_000  # per served model; new streams beyond: `capacity`
    # The forecast interval in score records (forecast_lo/hi): its probability.
    interval: float = 0.9
    # Score records as JSON (pipeline.kafka_io.outputs) or in a fixed binary layout
    # (pipeline.kafka_io.binary_scores: ~10x cheaper to write, half the bytes).
    output_format: str = "json"
    # Decisions on live evidence (pipeline.scorer.live; 0 events: off): promote or reject
    # the registry's SHADOW version after this many paired forecasts, if better by
    # shadow_margin; roll a new champion back if, over its first rollback_after events,
    # its error exceeds the previous one's by rollback_margin.
    shadow_promote_after: int = 0
    shadow_margin: float = 0.02
    rollback_after: int = 0
    rollback_margin: float = 0.1

    def __post_init__(self) -> None:
        for name in ("input_topic", "output_topic", "dlq_topic", "group", "model"):
            if not getattr(self, name):
                raise ConfigError(f"{name} must not be empty")
        if len({self.input_topic, self.output_topic, self.dlq_topic}) != 3:
            raise ConfigError("input, output and dead-letter topics must be three different topics")
        for name in (
            "max_poll_records",
            "state_capacity",
            "max_message_bytes",
            "model_check_s",
            "intra_op_threads",
            "state_ttl_s",
            "gap_reset_s",
            "poll_timeout_ms",
            "max_abs_value",
            "max_future_skew_s",
            "max_streams",
            "snapshot_interval_s",
            "standby_interval_s",
            "changelog_frames_per_turn",
            "swap_rebuild_per_turn",
        ):
            _positive(name, getattr(self, name))
        if self.until_idle is not None:
            _positive("until_idle", self.until_idle)
        if not 0 <= self.metrics_port < 65536:
            raise ConfigError(
                f"metrics_port must be 0 (off) or a TCP port, got {self.metrics_port}"
            )
        if self.poll_linger_ms < 0:
            raise ConfigError("poll_linger_ms must be >= 0 (0: score each poll's records at once)")
        if self.commit_interval_s < 0:
            raise ConfigError("commit_interval_s must be >= 0 (0: commit after every batch)")
        if self.guarantee not in ("at-least-once", "exactly-once"):
            raise ConfigError(
                f"guarantee must be at-least-once or exactly-once, got {self.guarantee!r}"
            )
        if self.guarantee == "exactly-once" and not self.changelog:
            raise ConfigError("exactly-once needs the state changelog (changelog=true)")
        if self.state_dir is not None and not self.changelog:
            raise ConfigError("state_dir (local snapshots) needs the state changelog")
        if self.standby and self.state_dir is None:
            raise ConfigError("standby keeps local snapshots of other partitions: set state_dir")
        if not 0.5 <= self.interval < 1.0:
            raise ConfigError(f"interval must be in [0.5, 1), got {self.interval}")
        if self.output_format not in ("json", "binary"):
            raise ConfigError(f"output_format must be json or binary, got {self.output_format!r}")
        if self.shadow_promote_after < 0 or self.rollback_after < 0:
            raise ConfigError("shadow_promote_after and rollback_after must be >= 0 (0: off)")
        if not 0.0 <= self.shadow_margin < 1.0 or self.rollback_margin < 0.0:
            raise ConfigError("shadow_margin must be in [0, 1) and rollback_margin >= 0")
        if self.warmup_steps < 0 or self.replay_steps < 0:
            raise ConfigError("warmup_steps and replay_steps must be >= 0")
        if self.season_bins != 0 and not 4 <= self.season_bins <= 288:  # season.MIN_BINS, BINS
            raise ConfigError(f"season_bins must be 0 (off) or in [4, 288], got {self.season_bins}")
        for route in self.routes:
            if "=" not in route:
                raise ConfigError(f"route {route!r} must look like PREFIX=MODEL (e.g. pump-=pumps)")

    @property
    def route_map(self) -> dict[str, str]:
        """Stream-id prefix → model name; the longest matching prefix wins."""
        return dict(r.split("=", 1) for r in self.routes)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelsConfig:
    """Where the commands that are not the scorer (train, models, detect, demo, bench)
    find models: the same ``STATECAST_REGISTRY`` / ``STATECAST_MODEL`` as the scorer."""

    registry: Path = Path("exported_models")
    model: str = "default"

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("model must not be empty")


def explicit_bootstrap(
    flags: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> str | None:
    """The broker the user named (flag, else ``STATECAST_BOOTSTRAP``), or None: commands
    that can run a managed local broker start one only when none was named."""
    environ = os.environ if environ is None else environ
    named = flags.get("bootstrap") or environ.get(ENV_PREFIX + "BOOTSTRAP")
    return str(named) if named else None


def _convert(name: str, raw: Any, hint: Any) -> Any:
    """Turn a flag or environment string into the field's declared type."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        if raw is None or (isinstance(raw, str) and raw.lower() in ("", "none", "null")):
            return None
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(name, raw, inner[0])
    if origin is tuple:
        if isinstance(raw, str):
            raw = [p.strip() for p in raw.split(",") if p.strip()]
        (item_hint, *_rest) = typing.get_args(hint)
        return tuple(_convert(name, r, item_hint) for r in raw)
    if isinstance(raw, hint) if isinstance(hint, type) else False:
        return raw
    try:
        if hint is bool:
            if isinstance(raw, str):
                if raw.lower() in ("1", "true", "yes", "on"):
                    return True
                if raw.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(raw)
            return bool(raw)
        if hint is Path:
            return Path(raw)
        return hint(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"{name}={raw!r} is not a valid {getattr(hint, '__name__', hint)}"
        ) from exc


def load(
    cls: type[T],
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    file_values: Mapping[str, Any] | None = None,
) -> T:
    """Build ``cls`` from flags, then ``STATECAST_*`` variables, then ``file_values``
    (a config file's contents), then the field defaults.

    Raises :class:`ConfigError` naming the field and the bad value.
    """
    flags = flags or {}
    environ = os.environ if environ is None else environ
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        hint = hints[field.name]
        if dataclasses.is_dataclass(hint):
            values[field.name] = load(hint, flags, environ)  # type: ignore[arg-type]
            continue
        raw = flags.get(field.name)
        if raw is None:
            raw = environ.get(ENV_PREFIX + field.name.upper())
        if raw is None and file_values:
            raw = file_values.get(field.name)
        if raw is not None:
            values[field.name] = _convert(field.name, raw, hint)
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"cannot build {cls.__name__}: {exc}") from exc
