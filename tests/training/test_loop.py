"""The method itself: early stopping restores the best weights, clipping bounds the
gradient norm, truncated BPTT carries the state forward but not the gradient."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pipeline.engine.normalise import NormaliserParams
from training.config import TrainConfig
from training.data import Prepared, prepare
from training.loop import fit, tbptt_chunk, validation_loss
from training.model import LSTMForecaster
from training.synthetic import generate

SMALL = TrainConfig(hidden=8, layers=2, horizon=2, segment=64, bptt=16, burn_in=4, batch_size=8)


@pytest.fixture(scope="module")
def prepared() -> Prepared:
    streams = [s.series() for s in generate(streams=3, length=400, seed=5)]
    return prepare(
        streams,
        NormaliserParams(),
        SMALL.horizon,
        0.25,
        SMALL.segment,
        SMALL.burn_in,
        SMALL.covariates,
    )


def test_early_stopping_stops_and_restores_the_best_weights(prepared: Prepared) -> None:
    # A learning rate this high overshoots after the first epochs, so validation stops
    # improving and patience runs out long before max_epochs.
    cfg = dataclasses.replace(SMALL, lr=0.05, max_epochs=40, patience=2, min_delta=0.0)
    model = LSTMForecaster(1, cfg)
    result = fit(model, prepared, cfg, progress=False)
    assert result.stopped_early and result.epochs_run < cfg.max_epochs
    assert result.epochs_run - result.best_epoch == cfg.patience
    losses = [h["val_loss"] for h in result.history]
    assert result.best_val_loss == min(losses)
    assert losses[-1] > result.best_val_loss  # the last epoch was worse...
    # ...and the model holds the best epoch's weights, not the last ones.
    assert validation_loss(model, prepared) == pytest.approx(result.best_val_loss, rel=1e-6)


def test_clipping_bounds_the_gradient_norm(prepared: Prepared) -> None:
    cfg = dataclasses.replace(SMALL, clip_norm=1e-3, max_epochs=1)
    result = fit(LSTMForecaster(1, cfg), prepared, cfg, progress=False)
    assert result.max_grad_norm > cfg.clip_norm  # clipping had something to do
    assert result.max_applied_grad_norm <= cfg.clip_norm * (1 + 1e-4)


def test_tbptt_carries_the_state_but_not_the_gradient(prepared: Prepared) -> None:
    torch.manual_seed(0)
    model = LSTMForecaster(1, SMALL)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.from_numpy(prepared.seg_x[:2])
    y = torch.from_numpy(prepared.seg_y[:2])
    m = torch.from_numpy(prepared.seg_mask[:2])
    _, state, _, _ = tbptt_chunk(model, opt, x[:, :16], y[:, :16], m[:, :16], None, 1.0)
    # Detached: no graph leads back into the first chunk (were it attached, the second
    # chunk's backward would run into the first chunk's freed graph and raise).
    assert all(t.grad_fn is None and not t.requires_grad for t in state)
    # Carried: the next chunk starts from that state, not from zeros.
    with torch.no_grad():
        carried, _ = model(x[:, 16:32], state)
        cold, _ = model(x[:, 16:32], None)
    assert not torch.allclose(carried, cold)
    tbptt_chunk(model, opt, x[:, 16:32], y[:, 16:32], m[:, 16:32], state, 1.0)
