"""``TrainConfig``: every knob of the method in one frozen, validated object.

Saved inside each export (model.json ``training_config``) so a model can be rebuilt
from its registry entry alone. Loaded with :func:`pipeline.config.load`: flags, then
``STATECAST_*`` variables, then a JSON ``--config FILE``, then these defaults.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from pipeline.engine.covariates import COVARIATES
from pipeline.engine.interval import DISTRIBUTIONS
from pipeline.errors import ConfigError

__all__ = ["CELLS", "TrainConfig", "load_train_config"]

CELLS = ("lstm", "gru")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Stacked-LSTM forecaster and its training procedure.

    Model: ``layers`` stacked LSTM layers of ``hidden`` units (sigmoid input/forget/output
    gates, tanh cell candidate and output; ``cell="gru"`` swaps in GRU layers for the
    ablation), ``dropout`` between layers, a linear head forecasting ``horizon`` steps of
    every feature, with a location and a scale each (``distribution``: the location is
    trained with a Huber loss, the scale with the distribution's negative log-likelihood);
    with ``residual`` the location is the change from the current (normalised) value.
    The inputs are the normalised values and the event-time ``covariates`` (time of day,
    day of week, gap since the last event).

    Training: truncated backpropagation through time over ``bptt`` steps, carrying the
    detached state across the chunks of a ``segment``; Adam (``lr``, ``weight_decay``);
    gradient-norm clipping at ``clip_norm``; early stopping after ``patience`` epochs
    without a validation improvement of ``min_delta``, restoring the best weights.
    """

    # The recurrent cell: "lstm" (the method) or "gru" (for the ablation in docs/quality.md).
    cell: str = "lstm"
    layers: int = 2
    # 32 since 2026-12-05: three seeds of each size scored alike on nab-dev (forecast and
    # detection, leave-one-category-out too) and on the generated suite, and 32 costs a
    # quarter of 64's LSTM arithmetic and half its state (docs/quality.md, "The network's
    # size").
    hidden: int = 32
    # The predictive distribution the scale head is trained for (pipeline.engine.interval).
    distribution: str = "laplace"
    # Event-time inputs beside the value (pipeline.engine.covariates); () for none.
    covariates: tuple[str, ...] = COVARIATES
    dropout: float = 0.1
    horizon: int = 5
    residual: bool = True
    bptt: int = 64
    segment: int = 512
    burn_in: int = 16
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.0
    clip_norm: float = 1.0
    max_epochs: int = 30
    patience: int = 4
    min_delta: float = 1e-4
    val_fraction: float = 0.2
    # The last gate_fraction of every stream is held out from training and early stopping:
    # champion and challenger are compared on it, data that chose neither.
    gate_fraction: float = 0.1
    seed: int = 1234
    threads: int = 2

    def __post_init__(self) -> None:
        ints = (
            "layers",
            "hidden",
            "horizon",
            "bptt",
            "segment",
            "batch_size",
            "max_epochs",
            "patience",
            "threads",
        )
        for name in ints:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 < self.val_fraction < 0.9:
            raise ConfigError(f"val_fraction must be in (0, 0.9), got {self.val_fraction}")
        if not 0.0 < self.gate_fraction < 0.5:
            raise ConfigError(f"gate_fraction must be in (0, 0.5), got {self.gate_fraction}")
        if self.lr <= 0 or self.clip_norm <= 0:
            raise ConfigError("lr and clip_norm must be > 0")
        if self.cell not in CELLS:
            raise ConfigError(f"cell must be one of {CELLS}, got {self.cell!r}")
        if self.distribution not in DISTRIBUTIONS:
            raise ConfigError(
                f"distribution must be one of {DISTRIBUTIONS}, got {self.distribution!r}"
            )
        unknown = set(self.covariates) - set(COVARIATES)
        if unknown:
            raise ConfigError(f"unknown covariates {sorted(unknown)}; known: {COVARIATES}")
        if self.segment < self.bptt or self.burn_in >= self.segment:
            raise ConfigError("need bptt <= segment and burn_in < segment")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_train_config(flags: dict[str, Any], config_file: Path | None) -> TrainConfig:
    """Flags and ``STATECAST_*`` override a JSON config file, which overrides defaults."""
    from pipeline.config import load

    from_file: dict[str, Any] = {}
    if config_file is not None:
        try:
            from_file.update(json.loads(Path(config_file).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read training config {config_file}: {exc}") from exc
        unknown = set(from_file) - {f.name for f in dataclasses.fields(TrainConfig)}
        if unknown:
            raise ConfigError(f"unknown keys in {config_file}: {sorted(unknown)}")
    return load(TrainConfig, flags, file_values=from_file)
