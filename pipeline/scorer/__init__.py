"""The scorer: the entry object that wires the engine to Kafka (see :mod:`.scorer`)."""

from pipeline.scorer.scorer import Scorer, tune_gc

__all__ = ["Scorer", "tune_gc"]
