"""The stacked-LSTM forecaster and its single-step export wrapper.

An LSTM layer keeps a cell state ``c`` and a hidden state ``h``; at every step the
sigmoid gates decide what to forget (f), what to write (i) and what to expose (o),
and tanh squashes the candidate and the output::

    i, f, o = sigmoid(W x + U h + b)      (three gates)
    g       = tanh(W_g x + U_g h + b_g)   (candidate)
    c'      = f * c + i * g
    h'      = o * tanh(c')

``layers`` such layers are stacked (dropout between them while training), and a
linear head maps the top hidden state to ``horizon`` future steps of every feature,
each with a location and a scale: the forecast and its uncertainty. (``cell="gru"``
stacks GRU layers instead, for the ablation; a GRU has no cell state, so ``c`` passes
through unchanged and the exported graph keeps one signature.)
"""

from __future__ import annotations

import torch
from torch import nn

from training.config import TrainConfig

__all__ = ["MIN_SCALE", "LSTMForecaster", "StepModel"]

MIN_SCALE = 1e-3  # in normalised units: a scale never collapses to zero


class LSTMForecaster(nn.Module):
    """Sequence model: ``x [B, T, F + C]`` (values, covariates) → predictions
    ``[B, T, horizon, F, 2]`` (location, scale; normalised units) and the final state."""

    def __init__(self, features: int, config: TrainConfig) -> None:
        super().__init__()
        self.features = features
        self.inputs = features + len(config.covariates)  # values, then covariates
        self.horizon = config.horizon
        self.residual = config.residual
        self.cell = config.cell
        rnn = nn.GRU if config.cell == "gru" else nn.LSTM
        self.rnn = rnn(
            input_size=self.inputs,
            hidden_size=config.hidden,
            num_layers=config.layers,
            dropout=config.dropout if config.layers > 1 else 0.0,
            batch_first=True,
        )
        self.head = nn.Linear(config.hidden, config.horizon * features * 2)

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        if self.cell == "gru":
            out, h = self.rnn(x, None if state is None else state[0])
            c = torch.zeros_like(h) if state is None else state[1]
        else:
            out, (h, c) = self.rnn(x, state)
        B, T, _ = out.shape
        raw = self.head(out).view(B, T, self.horizon, self.features, 2)
        loc = raw[..., 0]
        if self.residual:
            # Predict the change from the current value: persistence is the zero output.
            loc = loc + x[..., : self.features].unsqueeze(2)
        scale = nn.functional.softplus(raw[..., 1]) + MIN_SCALE
        return torch.stack([loc, scale], dim=-1), (h, c)


class StepModel(nn.Module):
    """The exported graph: one step for a batch of streams with explicit state."""

    def __init__(self, model: LSTMForecaster) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        pred, (h_out, c_out) = self.model(x.unsqueeze(1), (h, c))
        return pred[:, 0, ..., 0], pred[:, 0, ..., 1], h_out, c_out
