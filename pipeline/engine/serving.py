"""One served model: its ONNX session, its streams' state, and live swaps.

:meth:`ServedModel.score` takes the decoded events routed to this model (in
record order) and scores them batched across streams and sequential within a
stream: the i-th event of every stream in the batch goes into one
onnxruntime call, so per-stream order is exact and the model runs once per
"rank" rather than once per event.

:meth:`ServedModel.maybe_swap` follows the registry's CURRENT: a new version is
validated (sha256, ONNX load, signature and shapes, feature set) and swapped in
between batches; every stream's (h, c) is rebuilt by replaying its recent inputs
through the new model so scores do not jump. A bad version is refused, logged
and counted, and the old one keeps serving.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from pipeline.engine.events import DecodedBatch, Rejection
from pipeline.engine.inference import StepSession
from pipeline.engine.registry import ModelMeta, Registry
from pipeline.engine.state import Snapshot, StateStore
from pipeline.engine.stepper import advance, rebuild
from pipeline.errors import RegistryError

__all__ = ["Scored", "ServedModel"]

log = logging.getLogger(__name__)
F64 = npt.NDArray[np.float64]


@dataclasses.dataclass
class Scored:
    """Results for the accepted events, aligned with ``DecodedBatch`` rows ``rows``."""

    rows: npt.NDArray[np.int64]
    score: F64
    warm: npt.NDArray[np.bool_]
    forecast: F64  # [N, horizon, F] sensor units
    rejections: list[Rejection]
    touched: npt.NDArray[np.int64]  # slots whose state changed


def _rank_within_stream(slots: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Rank of each event within its stream in this batch (0, 1, 2, ... in record order):
    events of equal rank go to the model together, and ranks run in order."""
    N = len(slots)
    order = np.argsort(slots, kind="stable")  # stable: record order within a stream
    ordered = slots[order]
    first = np.ones(N, np.bool_)
    first[1:] = ordered[1:] != ordered[:-1]
    group_start = np.maximum.accumulate(np.where(first, np.arange(N), 0)) if N else first
    rank = np.empty(N, np.int64)
    rank[order] = np.arange(N) - group_start
    return rank


class ServedModel:
    """A model name, the version it serves, and the state of the streams routed to it."""

    def __init__(
        self,
        name: str,
        registry: Registry,
        *,
        threads: int = 1,
        capacity: int = 1024,
        replay_steps: int = 64,
        warmup_steps: int = 48,
        gap_reset_s: float = 86400.0,
        late_tolerance_s: float = 0.0,
        on_infer: Callable[[float], None] | None = None,
    ) -> None:
        self.name = name
        self.registry = registry
        self.threads = threads
        self.replay_steps = replay_steps
        self.warmup_steps = warmup_steps
        self.gap_reset_s = gap_reset_s
        self.late_tolerance_s = late_tolerance_s
        self.on_infer = on_infer
        self.meta = registry.meta(name)
        self.session = StepSession(self.meta, threads=threads)
        self.refused_version: str | None = None
        self.store = self._new_store(self.meta, capacity)

    def _new_store(self, meta: ModelMeta, capacity: int) -> StateStore:
        return StateStore(
            layers=meta.layers,
            hidden=meta.hidden,
            features=len(meta.features),
            horizon=meta.horizon,
            capacity=capacity,
            ring=self.replay_steps,
            prior_mu=meta.anomaly.prior_mean,
            prior_var=meta.anomaly.prior_std**2,
            prior_rep=meta.anomaly.prior_rep,
        )

    @property
    def version(self) -> str:
        return self.meta.version

    @property
    def threshold(self) -> float:
        return self.meta.anomaly.threshold

    # -- scoring --------------------------------------------------------------------

    def score(
        self,
        batch: DecodedBatch,
        rows: npt.NDArray[np.int64],
        now: float,
        partitions: npt.NDArray[np.int64] | None = None,
        offsets: npt.NDArray[np.int64] | None = None,
    ) -> Scored:
        """Score ``batch`` rows ``rows`` (this model's events, in record order).

        ``partitions`` and ``offsets`` (aligned with ``rows``) record where each stream's
        input comes from and the last input applied, for the changelog.
        """
        N = len(rows)
        F, Z = len(self.meta.features), self.meta.horizon
        sids = [batch.stream_ids[r] for r in rows.tolist()]
        slots = self.store.slots_for(sids, now) if N else np.empty(0, np.int64)
        rank = _rank_within_stream(slots)
        out_score = np.full(N, np.nan)
        out_warm = np.zeros(N, np.bool_)
        out_fc = np.zeros((N, Z, F))
        accepted = np.zeros(N, np.bool_)
        rejections: list[Rejection] = []
        ts_all = batch.ts[rows]
        x_all = batch.values[rows]
        store = self.store
        for r in range(int(rank.max()) + 1 if N else 0):
            idx = np.nonzero(rank == r)[0]
            sl = slots[idx]
            ts = ts_all[idx]
            last = store.last_ts[sl]
            late = ts < last - self.late_tolerance_s
            for i in idx[late].tolist():
                rejections.append(
                    Rejection(
                        int(batch.index[rows[i]]),
                        "out_of_order",
                        f"ts {ts_all[i]:.3f} is older than the stream's last event {store.last_ts[slots[i]]:.3f}",
                    )
                )
            idx, sl, ts, last = idx[~late], sl[~late], ts[~late], last[~late]
            if not len(idx):
                continue
            gap = np.isfinite(last) & (ts - last > self.gap_reset_s)
            if gap.any():
                store.reset_dynamics(sl[gap])
            warm = store.steps[sl] >= self.warmup_steps
            st = store.gather(sl)
            t0 = time.perf_counter()
            score, _err = advance(
                self.session, self.meta.normalisation, self.meta.anomaly, st, x_all[idx]
            )
            if self.on_infer:
                self.on_infer(time.perf_counter() - t0)
            store.scatter(sl, st)
            store.push_inputs(sl, x_all[idx])
            store.last_ts[sl] = np.maximum(last, ts)
            if partitions is not None and offsets is not None:
                store.part[sl] = partitions[idx]
                store.src_offset[sl] = offsets[idx]
            out_score[idx] = score
            out_warm[idx] = warm
            out_fc[idx] = st.fc
            accepted[idx] = True
        keep = np.nonzero(accepted)[0]
        touched = np.unique(slots[keep]) if len(keep) else np.empty(0, np.int64)
        return Scored(
            rows[keep], out_score[keep], out_warm[keep], out_fc[keep], rejections, touched
        )

    # -- live swaps -----------------------------------------------------------------

    def maybe_swap(self) -> str | None:
        """Swap to the registry's promoted version if it changed. Returns the new version,
        or None. Raises nothing: a bad version is refused and logged."""
        try:
            current = self.registry.current(self.name)
        except RegistryError as exc:
            log.error(
                "model %s: cannot read the registry (%s); keeping %s", self.name, exc, self.version
            )
            return None
        if current is None or current == self.version or current == self.refused_version:
            return None
        try:
            meta = self.registry.meta(self.name, current)
            if meta.features != self.meta.features:
                raise RegistryError(
                    f"features {meta.features} differ from the served {self.meta.features}; "
                    f"serve it under a new model name instead"
                )
            session = StepSession(meta, threads=self.threads)
        except RegistryError as exc:
            self.refused_version = current
            log.error(
                "model %s: refused version %s, keeping %s: %s",
                self.name,
                current,
                self.version,
                exc,
            )
            raise
        self._carry_over(meta, session)
        log.info(
            "model %s: swapped %s -> %s for %d streams",
            self.name,
            self.version,
            current,
            len(self.store),
        )
        self.meta, self.session, self.refused_version = meta, session, None
        return current

    def restore(self, snapshots: dict[str, tuple[Snapshot, int]], now: float) -> int:
        """Install restored snapshots (stream id → (snapshot, partition)).

        A snapshot made under another model version keeps its sensor statistics but gets
        its LSTM state rebuilt from its recent inputs, as after a live swap. Returns how
        many streams were restored.
        """
        stale: list[int] = []
        for sid, (snap, part) in snapshots.items():
            if snap.h.shape != (self.meta.layers, self.meta.hidden) or snap.fc.shape != (
                self.meta.horizon,
                len(self.meta.features),
            ):
                snap = dataclasses.replace(
                    snap,
                    h=np.zeros((self.meta.layers, self.meta.hidden), np.float32),
                    c=np.zeros((self.meta.layers, self.meta.hidden), np.float32),
                    fc=np.zeros((self.meta.horizon, len(self.meta.features))),
                )
            slot = self.store.load(sid, snap, part, now)
            if snap.version != self.version:
                stale.append(slot)
        if stale:
            sl = np.asarray(stale, np.int64)
            st = self.store.gather(sl)
            rebuild(
                self.session,
                self.meta.normalisation,
                st,
                [self.store.recent_inputs(s) for s in stale],
            )
            self.store.scatter(sl, st)
        return len(snapshots)

    def _carry_over(self, meta: ModelMeta, session: StepSession) -> None:
        """Rebuild each stream's LSTM state in the new model from its recent inputs."""
        old = self.store
        if (meta.layers, meta.hidden, meta.horizon) != (old.layers, old.hidden, old.horizon):
            new = self._new_store(meta, old.capacity)
            new.adopt(old)
            self.store = old = new
        live = np.asarray([old.slot_of(s) for s in old.stream_ids()], np.int64)
        for start in range(0, len(live), 4096):
            sl = live[start : start + 4096]
            st = old.gather(sl)
            rebuild(
                session, meta.normalisation, st, [old.recent_inputs(int(s)) for s in sl.tolist()]
            )
            old.scatter(sl, st)
