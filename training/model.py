"""The stacked-LSTM forecaster and its single-step export wrapper.

An LSTM layer keeps a cell state ``c`` and a hidden state ``h``; at every step the
sigmoid gates decide what to forget (f), what to write (i) and what to expose (o),
and tanh squashes the candidate and the output::

    i, f, o = sigmoid(W x + U h + b)      (three gates)
    g       = tanh(W_g x + U_g h + b_g)   (candidate)
    c'      = f * c + i * g
    h'      = o * tanh(c')

``layers`` such layers are stacked (dropout between them while training), and a
linear head maps the top hidden state to ``horizon`` future steps of every feature.
"""

from __future__ import annotations

import torch
from torch import nn

from training.config import TrainConfig

__all__ = ["LSTMForecaster", "StepModel"]


class LSTMForecaster(nn.Module):
    """Sequence model: ``x [B, T, F + C]`` (values, covariates) → forecasts
    ``[B, T, horizon, F]`` and the final state."""

    def __init__(self, features: int, config: TrainConfig) -> None:
        super().__init__()
        self.features = features
        self.inputs = features + len(config.covariates)  # values, then covariates
        self.horizon = config.horizon
        self.residual = config.residual
        self.lstm = nn.LSTM(
            input_size=self.inputs,
            hidden_size=config.hidden,
            num_layers=config.layers,
            dropout=config.dropout if config.layers > 1 else 0.0,
            batch_first=True,
        )
        self.head = nn.Linear(config.hidden, config.horizon * features)

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        out, (h, c) = self.lstm(x, state)
        B, T, _ = out.shape
        forecast = self.head(out).view(B, T, self.horizon, self.features)
        if self.residual:
            # Predict the change from the current value: persistence is the zero output.
            forecast = forecast + x[..., : self.features].unsqueeze(2)
        return forecast, (h, c)


class StepModel(nn.Module):
    """The exported graph: one step for a batch of streams with explicit state."""

    def __init__(self, model: LSTMForecaster) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        forecast, (h_out, c_out) = self.model(x.unsqueeze(1), (h, c))
        return forecast[:, 0], h_out, c_out
