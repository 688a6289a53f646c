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

A swap does not rebuild every stream at once (at 100k streams that held the poll loop
8-26 s, by network, and at 1M up to near ``max.poll.interval.ms``: docs/benchmarks.md,
"A model swap holds the poll loop"). It marks them
:attr:`~pipeline.engine.state.StateStore.stale` and each is rebuilt, as the swap would
have rebuilt it, before anything reads its state:

1. the swap marks every live stream stale (nothing is replayed yet);
2. a batch rebuilds the stale streams it is about to score, before anything else sees
   them (:meth:`ServedModel.materialize`);
3. so does whatever persists rows (a changelog frame, a local snapshot's copy) or copies
   them (a version pinned beside this one, another swap), first;
4. between batches :meth:`ServedModel.catch_up` rebuilds ``REBUILD_PER_TURN`` more, so
   none stays stale for long;
5. a stream freed, cold-started or restored is not stale any more.

Nothing changes a stale stream's row until it is rebuilt (1-5), so the rebuild reads what
the swap would have read and gives the same state.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.engine.admission import DEFAULT_BOUNDS, Bounds, admit, screen
from pipeline.engine.covariates import WEEK, covariates
from pipeline.engine.events import DecodedBatch, Rejection
from pipeline.engine.inference import StepSession
from pipeline.engine.interval import Band, IntervalParams
from pipeline.engine.registry import ModelMeta, Registry
from pipeline.engine.season import BINS
from pipeline.engine.state import Columns, Snapshot, StateStore, column, layout_of
from pipeline.engine.stepper import advance, rebuild
from pipeline.errors import RegistryError, StatecastError, describe

__all__ = ["Scored", "ServedModel"]

log = logging.getLogger(__name__)
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
# Stale streams a loop turn rebuilds after a swap (step 4; the scorer's
# ``swap_rebuild_per_turn``): 128 streams of 64 replayed steps, 20-30 ms on this machine
# (benchmarks/swap.py); 100k streams in ~800 turns, besides those rebuilt as used.
REBUILD_PER_TURN = 128
# Streams replayed in one batch: the replay's arrays for 4,096 streams are a few MB.
_REPLAY_CHUNK = 4096


@dataclasses.dataclass
class _Out:
    """Per-event results of one ``score`` call, filled rank by rank."""

    score: F64
    warm: npt.NDArray[np.bool_]
    fc: F64
    lo: F64
    hi: F64
    reason: npt.NDArray[np.int64]
    expected: F64  # [2, N, F]
    accepted: npt.NDArray[np.bool_]
    abs_error: F64
    nll: F64
    inputs: F64  # [N, F]
    share: F64  # [N, F]


def _replay_window(
    store: StateStore, slots: npt.NDArray[np.int64], names: tuple[str, ...]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.float32] | None]:
    """Each stream's ring inputs right-aligned, their counts, and their covariates, for a
    replay (:func:`pipeline.engine.stepper.rebuild`). Times the ring does not know (after
    a restore: the changelog does not carry them) are taken as one minute apart up to the
    stream's last event: an approximation that only shapes the rebuilt state, which the
    next real events correct."""
    inputs, phases, lengths = store.recent_window(slots)
    if not names:
        return inputs, lengths, None
    B, R = phases.shape
    col = np.arange(R)[None, :]
    held = col >= (R - lengths)[:, None]
    unknown = (held & ~np.isfinite(phases)).any(axis=1)
    if unknown.any():
        last_ts = store.last_ts[slots[unknown]]
        last = np.where(np.isfinite(last_ts), np.mod(np.nan_to_num(last_ts), WEEK), 0.0)
        phases[unknown] = last[:, None] - 60.0 * (R - 1 - col)
    prev = np.concatenate([np.full((B, 1), np.nan), phases[:, :-1]], axis=1)
    prev[~np.concatenate([np.zeros((B, 1), np.bool_), held[:, :-1]], axis=1)] = np.nan
    gaps = np.mod(phases - prev, WEEK)  # phases wrap at the end of a week
    cov = covariates(phases.ravel(), (phases - gaps).ravel(), names)
    return inputs, lengths, cov.reshape(B, R, len(names))


def _error_unit(meta: ModelMeta) -> str:
    """What a model's forecast errors are measured in (pipeline.engine.stepper.advance):
    its predicted scale, or the stream's spread."""
    return "scale" if meta.distribution is not None and meta.anomaly.use_scale else "spread"


# The scalars a restore requires to be finite (with mean, var, h and c).
_CHECKED_ON_RESTORE = (
    "n", "en", "es", "emu", "evar", "peak", "rec", "trate", "tu", "tb", "pm", "pv", "pq",
)  # fmt: skip


@dataclasses.dataclass
class Scored:
    """Results for the accepted events, aligned with ``DecodedBatch`` rows ``rows``."""

    rows: npt.NDArray[np.int64]
    score: F64
    warm: npt.NDArray[np.bool_]
    forecast: F64  # [N, horizon, F] sensor units
    lo: F64  # [N, horizon, F] the forecast interval (NaN: a model without a scale head)
    hi: F64
    reason: npt.NDArray[np.int64]  # [N] index into stepper.REASONS
    expected_lo: F64  # [N, F] the interval each value was expected in (NaN: none)
    expected_hi: F64
    rejections: list[Rejection]
    touched: npt.NDArray[np.int64]  # slots whose state changed
    # How good the forecast of each value was (stepper.Stepped; NaN: no forecast yet).
    abs_error: F64 | None = None  # [N]
    nll: F64 | None = None  # [N]
    inputs: F64 | None = None  # [N, F] the normalised values the network saw (NaN: none)
    share: F64 | None = None  # [N, F] each feature's share of its score (stepper.Stepped)


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
        season_bins: int = BINS,
        warmup_steps: int = 48,
        gap_reset_s: float = 86400.0,
        late_tolerance_s: float = 0.0,
        bounds: Bounds = DEFAULT_BOUNDS,
        interval: IntervalParams = IntervalParams(),  # noqa: B008 (frozen, immutable)
        on_infer: Callable[[float], None] | None = None,
        version: str | None = None,
    ) -> None:
        self.name = name
        self.registry = registry
        self.threads = threads
        self.replay_steps = replay_steps
        self.season_bins = season_bins
        self.warmup_steps = warmup_steps
        self.gap_reset_s = gap_reset_s
        self.late_tolerance_s = late_tolerance_s
        self.bounds = bounds
        self.interval = interval
        self.on_infer = on_infer
        self.meta = registry.meta(name, version)
        self.session = StepSession(self.meta, threads=threads)
        self.refused_version: str | None = None
        # The version swapped away from and its streams' LSTM state as it stood, until the
        # next batch: a rollback watch pinned right after the swap takes it over instead of
        # replaying every stream again (:meth:`pinned`).
        self._left: tuple[str, dict[str, npt.NDArray[Any]]] | None = None
        # Whether stale streams may be left (steps 1-5 above), and whether their errors
        # were measured in other units than this version's (the rebuild's ``new_units``).
        self._stale = False
        self._stale_units = False
        self.store = self._new_store(self.meta, capacity)
        # Called with the slots a batch, a swap or an eviction is about to change or free,
        # before any of them changes: the scorer writes the changelog frames a checkpoint
        # has not written yet (pipeline.scorer.checkpoint, 4c).
        self.before_update: Callable[[npt.NDArray[np.int64]], None] | None = None

    def _new_store(self, meta: ModelMeta, capacity: int) -> StateStore:
        return StateStore.for_model(
            meta, capacity=capacity, ring=self.replay_steps, season_bins=self.season_bins
        )

    def pinned(self, version: str) -> ServedModel:
        """Another version of this model with the same settings and its own copy of every
        stream's state, taken over as a swap would (the sensor's statistics copied, the
        LSTM state rebuilt from the recent inputs; for the version a swap just replaced,
        before any batch, the LSTM state it had): a shadow, warm from its first event and
        measuring errors in the same stream units. Raises RegistryError if it does not load."""
        other = ServedModel(
            self.name,
            self.registry,
            threads=self.threads,
            capacity=self.store.capacity,
            replay_steps=self.replay_steps,
            season_bins=self.season_bins,
            warmup_steps=self.warmup_steps,
            gap_reset_s=self.gap_reset_s,
            late_tolerance_s=self.late_tolerance_s,
            bounds=self.bounds,
            interval=self.interval,
            version=version,
        )
        left, self._left = self._left, None
        if left is not None and left[0] == version and other.store.takes_lstm_state(left[1]):
            # The version this one replaced, pinned before any event moved the streams on:
            # their state as it stood is exact, and replaying every stream would hold the
            # poll loop as long as the swap did (benchmarks/swap.py). The streams' sensor
            # statistics are the same stale or rebuilt (a rebuild changes only what the
            # state left behind holds).
            other.store.adopt(self.store)
            other.store.install_lstm_state(left[1])
        else:
            self.materialize_all()  # 3. the copy takes this version's state
            other.store.adopt(self.store)
            other._carry_over(other.meta, self.meta)
        return other

    @property
    def version(self) -> str:
        return self.meta.version

    @property
    def band(self) -> Band | None:
        """The interval rule of the served version (None: it forecasts points only)."""
        return self._band_of(self.meta)

    def _band_of(self, meta: ModelMeta) -> Band | None:
        dist = meta.distribution
        return None if dist is None else Band.of(dist, self.interval)

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

        Every row ends accepted or rejected with a reason, never raising: values and times
        that would poison a stream are screened out first; a new stream beyond
        ``max_streams`` is refused; a step that would make a stream's state non-finite
        resets that stream instead; an unexpected exception in a batched step is narrowed
        down by stepping its events one at a time, and only the event that still fails is
        rejected (``internal_error``).
        """
        self._left = None  # a batch moves the streams on: the state left behind is stale
        rejections: list[Rejection] = []
        ts_all, x_all = batch.ts[rows], batch.values[rows]
        ok = screen(self.bounds, batch.index[rows], ts_all, x_all, now, rejections)
        sids_all = [batch.stream_ids[r] for r in rows.tolist()]
        ok &= admit(self.bounds, self.store, self.name, batch.index[rows], sids_all, ok, rejections)
        if not ok.all():
            sel = np.nonzero(ok)[0]
            rows, ts_all, x_all = rows[sel], ts_all[sel], x_all[sel]
            sids_all = [sids_all[i] for i in sel.tolist()]
            if partitions is not None and offsets is not None:
                partitions, offsets = partitions[sel], offsets[sel]
        N = len(rows)
        F, Z = len(self.meta.features), self.meta.horizon
        slots = self.store.slots_for(sids_all, now, touch=False) if N else np.empty(0, np.int64)
        self.materialize(slots)  # 2. before the hooks below copy or persist them
        if N and self.before_update is not None:
            self.before_update(slots)
        rank = _rank_within_stream(slots)
        out = _Out(
            score=np.full(N, np.nan),
            warm=np.zeros(N, np.bool_),
            fc=np.zeros((N, Z, F)),
            lo=np.full((N, Z, F), np.nan),
            hi=np.full((N, Z, F), np.nan),
            reason=np.zeros(N, np.int64),
            expected=np.full((2, N, F), np.nan),
            accepted=np.zeros(N, np.bool_),
            abs_error=np.full(N, np.nan),
            nll=np.full(N, np.nan),
            inputs=np.full((N, F), np.nan),
            share=np.full((N, F), np.nan),
        )
        store = self.store
        record_of = batch.index[rows]
        for r in range(int(rank.max()) + 1 if N else 0):
            idx = np.nonzero(rank == r)[0]
            last = store.last_ts[slots[idx]]
            late = ts_all[idx] < last - self.late_tolerance_s
            for i in idx[late].tolist():
                rejections.append(
                    Rejection(
                        int(record_of[i]),
                        "out_of_order",
                        f"ts {ts_all[i]:.3f} is older than the stream's last event {store.last_ts[slots[i]]:.3f}",
                    )
                )
            idx = idx[~late]
            if not len(idx):
                continue
            where = None if partitions is None or offsets is None else (partitions, offsets)
            try:
                self._step(idx, slots, ts_all, x_all, now, where, out, rejections, record_of)
            except Exception:  # narrow it down: one event at a time
                log.exception(
                    "model %s: a batched step failed; stepping its events singly", self.name
                )
                for i in idx.tolist():
                    one = np.asarray([i], np.int64)
                    try:
                        self._step(
                            one, slots, ts_all, x_all, now, where, out, rejections, record_of
                        )
                    except Exception as exc:
                        rejections.append(
                            Rejection(int(record_of[i]), "internal_error", describe(exc))
                        )
        keep = np.nonzero(out.accepted)[0]
        touched = np.unique(slots[keep]) if len(keep) else np.empty(0, np.int64)
        return Scored(
            rows[keep],
            out.score[keep],
            out.warm[keep],
            out.fc[keep],
            out.lo[keep],
            out.hi[keep],
            out.reason[keep],
            out.expected[0, keep],
            out.expected[1, keep],
            rejections,
            touched,
            out.abs_error[keep],
            out.nll[keep],
            out.inputs[keep],
            out.share[keep],
        )

    def _step(
        self,
        idx: npt.NDArray[np.int64],
        slots: npt.NDArray[np.int64],
        ts_all: F64,
        x_all: F64,
        now: float,
        where: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None,
        out: _Out,
        rejections: list[Rejection],
        record_of: npt.NDArray[np.int64],
    ) -> None:
        """One batched step for events ``idx`` (at most one per stream)."""
        store = self.store
        sl, ts, x = slots[idx], ts_all[idx], x_all[idx]
        last = store.last_ts[sl]
        gap = np.isfinite(last) & (ts - last > self.gap_reset_s)
        if gap.any():
            store.reset_dynamics(sl[gap])
        warm = store.steps[sl] >= self.warmup_steps
        st = store.gather(sl)
        t0 = time.perf_counter()
        # Overflow is not an error here: a non-finite result is caught per stream below.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            cov = covariates(ts, last, self.meta.covariates) if self.meta.covariates else None
            band = self.band
            stepped = advance(
                self.session, self.meta.normalisation, self.meta.anomaly, st, x, cov, band, ts, last
            )
            score = stepped.score
        if self.on_infer:
            self.on_infer(time.perf_counter() - t0)
        with np.errstate(over="ignore"):
            # The replay ring holds float32: a value beyond its range would turn inf there.
            finite = st.finite_rows() & np.isfinite(x.astype(np.float32)).all(axis=1)
        store.scatter(sl, st)
        store.push_inputs(sl[finite], x[finite], ts[finite])
        store.last_ts[sl] = np.maximum(last, ts)
        store.last_seen[sl] = now
        if where is not None:
            store.part[sl] = where[0][idx]
            store.src_offset[sl] = where[1][idx]
        if not finite.all():
            # The state would have turned non-finite: cold-start those streams instead,
            # and dead-letter the event that did it.
            store.reset(sl[~finite])
            for i in idx[~finite].tolist():
                rejections.append(
                    Rejection(
                        int(record_of[i]),
                        "state_reset",
                        "this event would have made the stream's state non-finite; "
                        "the stream was reset",
                    )
                )
            keep = np.nonzero(finite)[0]
        else:
            keep = np.arange(len(idx))
        out.score[idx[keep]] = score[keep]
        out.warm[idx[keep]] = warm[keep]
        out.fc[idx[keep]] = st.fc[keep]
        out.reason[idx[keep]] = stepped.reason[keep]
        out.expected[0, idx[keep]] = stepped.expected_lo[keep]
        out.expected[1, idx[keep]] = stepped.expected_hi[keep]
        out.abs_error[idx[keep]] = stepped.abs_error[keep]
        out.nll[idx[keep]] = stepped.nll[keep]
        out.inputs[idx[keep]] = stepped.inputs[keep]
        out.share[idx[keep]] = stepped.share[keep]
        if band is not None:
            lo, hi = band.bounds(st.fc[keep], st.fs[keep], st.qlog[keep])
            out.lo[idx[keep]], out.hi[idx[keep]] = lo, hi
        out.accepted[idx[keep]] = True

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
        self.materialize_all()  # 3. streams the last swap left stale, in its version first
        if self.before_update is not None:
            self.before_update(self.store.live_slots())  # the swap changes every stream
        left = (self.version, self.store.lstm_state())
        self._carry_over(meta, self.meta)
        self._left = left
        log.info(
            "model %s: swapped %s -> %s for %d streams (each rebuilt when next used)",
            self.name,
            self.version,
            current,
            len(self.store),
        )
        self.meta, self.session, self.refused_version = meta, session, None
        return current

    def restore_columns(
        self, stream_ids: list[str], parts: npt.NDArray[np.int64], cols: Columns, now: float
    ) -> tuple[int, int]:
        """Install restored streams of one layout (model, version, shapes) at once.

        A stream saved under another model version keeps its sensor statistics but gets its
        LSTM state rebuilt from its recent inputs, as after a live swap; one saved with
        another network layout starts its LSTM state afresh. A stream that cannot be one of
        this model (another feature count, non-finite statistics or state) is skipped and
        cold-starts with its next event. Returns ``(restored, skipped)``."""
        c = cols.cols
        mean, var, h, cc = (column(c, name) for name in ("mean", "var", "h", "c"))
        F = len(self.meta.features)
        if mean.shape[1] != F or column(c, "ring").shape[2] != F:
            log.warning(
                "model %s: %d streams not restored (they have %d features, the model %d); "
                "they cold-start",
                self.name,
                len(cols),
                mean.shape[1],
                F,
            )
            return 0, len(cols)
        stats = np.stack([column(c, name) for name in _CHECKED_ON_RESTORE], axis=1)
        ok = np.isfinite(stats).all(axis=1) & np.isfinite(mean).all(axis=1)
        ok &= np.isfinite(var).all(axis=1)
        ok &= np.isfinite(h).all(axis=(1, 2)) & np.isfinite(cc).all(axis=(1, 2))
        if not ok.all():
            log.warning(
                "model %s: %d streams not restored (non-finite statistics or LSTM state); "
                "they cold-start",
                self.name,
                int((~ok).sum()),
            )
            keep = np.nonzero(ok)[0]
            cols = cols.take(keep)
            stream_ids = [stream_ids[i] for i in keep.tolist()]
            parts = parts[keep]
            c = cols.cols
        n = len(cols)
        if h.shape[1:] != (self.meta.layers, self.meta.hidden) or column(c, "fc").shape[1:] != (
            self.meta.horizon,
            F,
        ):
            c = dict(c)
            c["h"] = np.zeros((n, self.meta.layers, self.meta.hidden), np.float32)
            c["c"] = np.zeros((n, self.meta.layers, self.meta.hidden), np.float32)
            c["fc"] = np.zeros((n, self.meta.horizon, F))
            c["fs"] = None
            cols = Columns(cols.model, cols.version, cols.rows, c)
        slots = self.store.load_many(stream_ids, cols, parts, now)
        if cols.version != self.version and n:
            new_units = self._units_of(cols.version) not in (None, _error_unit(self.meta))
            for at in range(0, n, 4096):
                sl = slots[at : at + 4096]
                st = self.store.gather(sl)
                window = _replay_window(self.store, sl, self.meta.covariates)
                rebuild(
                    self.session, self.meta.normalisation, st, *window,
                    band=self.band, anom=self.meta.anomaly, new_units=new_units,
                )  # fmt: skip
                self.store.scatter(sl, st)
        return n, len(ok) - n

    def _units_of(self, version: str) -> str | None:
        """What ``version`` of this model measured its errors in (None: the registry no
        longer has it, or cannot read it; its errors are then taken as this one's)."""
        try:
            return _error_unit(self.registry.meta(self.name, version, verify=False))
        except StatecastError:
            return None

    def restore(self, snapshots: dict[str, tuple[Snapshot, int]], now: float) -> tuple[int, int]:
        """Install restored snapshots (stream id → (snapshot, partition)), as
        :meth:`restore_columns` does, grouped by layout. Returns ``(restored, skipped)``."""
        groups: dict[tuple[object, ...], list[str]] = {}
        for sid, (snap, _) in snapshots.items():
            groups.setdefault(layout_of(snap), []).append(sid)
        restored = skipped = 0
        for ids in groups.values():
            cols = Columns.from_snapshots([snapshots[sid][0] for sid in ids])
            parts = np.asarray([snapshots[sid][1] for sid in ids], np.int64)
            done, dropped = self.restore_columns(ids, parts, cols, now)
            restored, skipped = restored + done, skipped + dropped
        return restored, skipped

    def _carry_over(self, meta: ModelMeta, previous: ModelMeta) -> None:
        """1. Carry every stream over to ``meta`` (the streams' state was ``previous``'s):
        each is marked stale, and its LSTM state is rebuilt in the new model from its
        recent inputs when it is next used (:meth:`materialize`), or by :meth:`catch_up`.
        ``meta`` must be this object's by then, with its session."""
        self._stale_units = _error_unit(meta) != _error_unit(previous)
        old = self.store
        if (meta.layers, meta.hidden, meta.horizon) != (old.layers, old.hidden, old.horizon):
            new = self._new_store(meta, old.capacity)
            new.adopt(old)
            self.store = old = new
        old.stale[old.live_slots()] = True
        self._stale = len(old) > 0

    @property
    def catching_up(self) -> bool:
        """Streams a swap left stale may be left (step 4 has not found them all rebuilt)."""
        return self._stale

    def materialize(self, slots: I64) -> None:
        """2.-3. Rebuild those of ``slots`` still stale after a swap (as the swap would
        have: replayed through the served version), before anything reads them."""
        if not self._stale or not len(slots):
            return
        stale = slots[self.store.stale[slots]]
        if len(stale):
            self._rebuild(np.unique(stale))

    def catch_up(self, budget: int = REBUILD_PER_TURN) -> int:
        """4. Rebuild up to ``budget`` stale streams; returns how many are left."""
        if not self._stale:
            return 0
        stale = self.store.stale_slots()
        self._rebuild(stale[:budget])
        left = max(0, len(stale) - budget)
        self._stale = left > 0
        return left

    def materialize_all(self) -> None:
        """3. Rebuild every stale stream now."""
        if self._stale:
            self._rebuild(self.store.stale_slots())
            self._stale = False

    def _rebuild(self, slots: I64) -> None:
        store, meta = self.store, self.meta
        for start in range(0, len(slots), _REPLAY_CHUNK):
            sl = slots[start : start + _REPLAY_CHUNK]
            st = store.gather(sl)
            window = _replay_window(store, sl, meta.covariates)
            rebuild(
                self.session, meta.normalisation, st, *window,
                band=self.band, anom=meta.anomaly, new_units=self._stale_units,
            )  # fmt: skip
            store.scatter(sl, st)
            store.stale[sl] = False
