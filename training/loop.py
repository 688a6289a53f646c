"""The training loop: truncated BPTT, Adam, gradient clipping, early stopping.

Each epoch shuffles the training segments into batches. A batch walks its
segments in chunks of ``bptt`` steps: forward, masked loss (Huber on the location,
the predictive distribution's negative log-likelihood on the scale), backward
through those steps only, clip the gradient norm, Adam step, then carry the
*detached* (h, c) into the next chunk, so the state spans the whole segment
while gradients span ``bptt`` steps. After every epoch the model runs over each
whole stream in eval mode and the loss on the validation part decides early
stopping; the best weights are restored at the end.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from training.config import TrainConfig
from training.data import Prepared
from training.model import LSTMForecaster

__all__ = ["FitResult", "fit", "masked_loss", "seed_everything", "tbptt_chunk", "validation_loss"]

log = logging.getLogger(__name__)


@dataclasses.dataclass
class FitResult:
    best_epoch: int
    epochs_run: int
    best_val_loss: float
    history: list[dict[str, float]]
    stopped_early: bool
    seconds: float
    max_grad_norm: float = 0.0  # the largest gradient norm before clipping
    max_applied_grad_norm: float = 0.0  # ... and after: never above clip_norm


State = tuple[torch.Tensor, torch.Tensor]


def tbptt_chunk(
    model: LSTMForecaster,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    m: torch.Tensor,
    state: State | None,
    clip_norm: float,
    distribution: str = "laplace",
) -> tuple[float, State, float, float]:
    """One truncated-BPTT chunk: forward from the carried state, masked loss, backward
    through this chunk only, clip the gradient norm, Adam step.

    Returns ``(loss, detached state for the next chunk, gradient norm before clipping,
    gradient norm applied)``. The state is detached: the next chunk's gradients stop here.
    """
    pred, (h, c) = model(x, state)
    loss = masked_loss(pred, y, m, distribution)
    opt.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
    before = float(nn.utils.clip_grad_norm_(model.parameters(), clip_norm))
    grads = [p.grad.detach().norm() for p in model.parameters() if p.grad is not None]
    applied = float(torch.norm(torch.stack(grads))) if grads else 0.0
    opt.step()
    return float(loss.detach()), (h.detach(), c.detach()), before, applied


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def masked_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, distribution: str = "laplace"
) -> torch.Tensor:
    """The loss over the steps and horizons where ``mask`` is 1 (``mask [B, T, horizon]``).

    ``pred [..., 2]`` holds a location and a scale. The location is fitted with a Huber
    loss (what a point forecast needs: robust to the spikes sensor data carries); the
    scale with the negative log-likelihood of ``distribution`` around the *detached*
    location, so learning the uncertainty never trades away point accuracy.
    """
    loc, scale = pred[..., 0], pred[..., 1]
    huber = nn.functional.smooth_l1_loss(loc, target, reduction="none")
    resid = (target - loc.detach()).abs() / scale
    if distribution == "gaussian":
        nll = torch.log(scale) + 0.5 * resid**2
    else:  # laplace
        nll = torch.log(scale) + resid
    per = (huber + nll).mean(dim=-1)
    denom = mask.sum().clamp_min(1.0)
    return (per * mask).sum() / denom


@torch.no_grad()
def validation_loss(
    model: LSTMForecaster, prepared: Prepared, distribution: str = "laplace"
) -> float:
    """Loss on the validation part of every stream, with state carried from its start."""
    model.eval()
    total, count = 0.0, 0.0
    for _name, z, y, mask, split in prepared.val:
        pred, _ = model(torch.from_numpy(z).unsqueeze(0))
        m = torch.from_numpy(mask[split:]).unsqueeze(0)
        target = torch.from_numpy(y[split:]).unsqueeze(0)
        loss = masked_loss(pred[:, split:], target, m, distribution)
        n = float(m.sum())
        total += float(loss) * n
        count += n
    return total / max(count, 1.0)


def fit(
    model: LSTMForecaster, prepared: Prepared, config: TrainConfig, *, progress: bool = True
) -> FitResult:
    """Train in place; returns the history. The model ends with the best weights."""
    seed_everything(config.seed)
    torch.set_num_threads(config.threads)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    x_all = torch.from_numpy(prepared.seg_x)
    y_all = torch.from_numpy(prepared.seg_y)
    m_all = torch.from_numpy(prepared.seg_mask)
    N, S = x_all.shape[:2]
    gen = torch.Generator().manual_seed(config.seed)
    best = (float("inf"), 0, copy.deepcopy(model.state_dict()))
    history: list[dict[str, float]] = []
    started = time.monotonic()
    stale = 0
    epochs = 0
    max_norm = max_applied = 0.0
    bar = tqdm(range(1, config.max_epochs + 1), desc="train", unit="epoch", disable=not progress)
    for epoch in bar:
        epochs = epoch
        model.train()
        perm = torch.randperm(N, generator=gen)
        run_loss, run_n = 0.0, 0
        for b in range(0, N, config.batch_size):
            idx = perm[b : b + config.batch_size]
            x, y, m = x_all[idx], y_all[idx], m_all[idx]
            state = None
            for a in range(0, S, config.bptt):
                sl = slice(a, a + config.bptt)
                if float(m[:, sl].sum()) == 0.0 and state is not None:
                    # Nothing to learn here (burn-in or padding): just carry the state.
                    with torch.no_grad():
                        _, state = model(x[:, sl], state)
                    continue
                loss, state, before, applied = tbptt_chunk(
                    model,
                    opt,
                    x[:, sl],
                    y[:, sl],
                    m[:, sl],
                    state,
                    config.clip_norm,
                    config.distribution,
                )
                max_norm = max(max_norm, before)
                max_applied = max(max_applied, applied)
                run_loss += loss
                run_n += 1
        val = validation_loss(model, prepared, config.distribution)
        train_loss = run_loss / max(run_n, 1)
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val})
        bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val:.4f}")
        if val < best[0] - config.min_delta:
            best = (val, epoch, copy.deepcopy(model.state_dict()))
            stale = 0
        else:
            stale += 1
            if stale >= config.patience:
                log.info("early stop at epoch %d (best %d)", epoch, best[1])
                break
    bar.close()
    model.load_state_dict(best[2])
    model.eval()
    return FitResult(
        best_epoch=best[1],
        epochs_run=epochs,
        best_val_loss=best[0],
        history=history,
        stopped_early=epochs < config.max_epochs,
        seconds=time.monotonic() - started,
        max_grad_norm=max_norm,
        max_applied_grad_norm=max_applied,
    )
