"""The one exception tree of Statecast.

Every error raised on purpose by ``pipeline`` or ``training`` derives from
:class:`StatecastError`; third-party errors (kafka-python, onnxruntime, torch,
OS errors) are translated at the boundary into the most specific class here,
with ``raise ... from exc``. Messages say what to do next, not only what broke::

    StatecastError
    ├── ConfigError            bad flag, environment variable or config file
    ├── KafkaError             the broker cannot be reached or refuses a request
    │   └── BrokerError        the managed local broker cannot be fetched/started/stopped
    ├── RegistryError          the model registry is missing, unreadable or inconsistent
    │   └── ModelRejected      a model version failed validation (sha256, ONNX load, shapes)
    ├── DataError              training data cannot be read or is too small
    │   └── BadScoreRecord     a value is not a score record this version can read
    └── TrainingError          training or export failed (e.g. ONNX parity above tolerance)

Bad *events* are not exceptions on the hot path: the codec reports them as
data (a reason code per record) so that one malformed message never stops the
consumer; :class:`EventRejected` exists for the single-event API only.
"""

from __future__ import annotations

__all__ = [
    "BadScoreRecord",
    "BrokerError",
    "ConfigError",
    "DataError",
    "EventRejected",
    "KafkaError",
    "ModelRejected",
    "RegistryError",
    "StatecastError",
    "TrainingError",
    "describe",
]


class StatecastError(Exception):
    """Root of every error Statecast raises on purpose."""


class ConfigError(StatecastError):
    """A flag, ``STATECAST_*`` variable or config file has a bad value."""


class KafkaError(StatecastError):
    """The Kafka broker cannot be reached, or it refused a request."""


class BrokerError(KafkaError):
    """The managed local broker could not be fetched, started or stopped."""


class RegistryError(StatecastError):
    """The model registry is missing, unreadable or inconsistent."""


class ModelRejected(RegistryError):
    """A model version failed validation and must not serve."""


class DataError(StatecastError):
    """Training data is unreadable, malformed or too small."""


class BadScoreRecord(DataError):
    """A value is not a binary score record of a format this version reads
    (:mod:`pipeline.kafka_io.binary_scores`)."""


class TrainingError(StatecastError):
    """Training or export failed."""


class EventRejected(StatecastError):
    """A single event failed validation; ``reason`` is the DLQ reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def describe(exc: BaseException) -> str:
    """An unexpected exception as one bounded line (for a dead letter's error header)."""
    return f"{type(exc).__name__}: {exc}"[:500]
