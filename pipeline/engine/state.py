"""Per-stream state in preallocated arrays, one slot per stream.

Everything a stream carries between events lives in column ``slot`` of a few
arrays (not in a dict of small arrays): LSTM ``h``/``c`` for every layer, the
online normaliser, the anomaly statistics (:mod:`pipeline.engine.anomaly`: error mean and
variance, running range, record / repeat / tail-surprise rates, recent peak), the
last forecast, the last event time, the steps seen, and a short ring buffer of recent
inputs used to rebuild the LSTM state when the model is swapped. The scorer touches streams
only through :meth:`StateStore.slots_for`, :meth:`gather` and :meth:`scatter`.

Policies:

* **Idle eviction**: a stream not seen for ``ttl_s`` (wall clock) frees its slot
  (:meth:`evict_idle`); memory is bounded by the number of streams active within
  the TTL. Arrays grow by doubling and never shrink; freed slots are reused.
* **Gaps**: if an event arrives more than ``gap_reset_s`` (event time) after the
  stream's previous one, the LSTM state and the last forecast are reset, so the
  stream warms up again; the normaliser and error statistics are kept, because
  a sensor's scale survives a silence better than its short-term dynamics.
* **Late events** (older than the stream's last event) are rejected by the scorer
  before they reach the store, so they never corrupt it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from pipeline.engine import dayspread, pages, relative16, season
from pipeline.engine.anomaly import DEPARTURE_BLOCKS, HABIT_SLOTS
from pipeline.engine.blend import MOMENTS
from pipeline.engine.covariates import WEEK
from pipeline.engine.season import BINS

if TYPE_CHECKING:
    from pipeline.engine.anomaly import AnomalyParams
    from pipeline.engine.registry import ModelMeta

__all__ = ["STATE_DTYPE", "Columns", "Snapshot", "StateStore", "StepState", "column", "layout_of"]

F32 = npt.NDArray[np.float32]
F16 = npt.NDArray[np.float16]
# The LSTM state's type between steps: the step model's state interface
# (pipeline.engine.inference wraps the exported float32 graph with casts to it).
STATE_DTYPE = np.float16
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclasses.dataclass
class Snapshot:
    """One stream's state as stored in the changelog (an immutable copy)."""

    model: str
    version: str
    source_offset: int
    last_ts: float
    steps: int
    ring_len: int
    has_fc: bool
    n: float
    en: float
    es: float
    emu: float
    evar: float
    run: float
    rep_p: float
    peak: float
    rec: float
    trate: float
    last_x: npt.NDArray[np.float64]  # [F]
    lo: npt.NDArray[np.float64]  # [F]
    hi: npt.NDArray[np.float64]  # [F]
    h: npt.NDArray[np.float16]  # [L, H], as the store keeps it
    c: npt.NDArray[np.float16]  # [L, H]
    mean: npt.NDArray[np.float64]  # [F]
    var: npt.NDArray[np.float64]  # [F]
    fc: npt.NDArray[np.float64]  # [Z, F]
    # The replay ring [R, F], oldest first, as the store keeps it: relative16 codes of the
    # reference ring_ref [F] in the unit ring_unit [F] (format 14); from an older frame
    # float32 sensor values, and ring_ref, ring_unit None (Snapshot.ring_values: either).
    ring: npt.NDArray[np.float16] | npt.NDArray[np.float32]
    # The forecast's scale (sensor units; NaN: a model without a scale head, or a frame
    # from before intervals) and the interval's log multiplier (pipeline.engine.interval).
    fs: npt.NDArray[np.float64] | None = None  # [Z, F]
    qlog: float = 0.0
    # The per-stream forecast gain (pipeline.engine.gain): its sums and the last raw
    # one-step change the model predicted (None: a frame from before the gain).
    gxy: float = 0.0
    gxx: float = 0.0
    gn: float = 0.0
    dlt: npt.NDArray[np.float64] | None = None  # [F]
    # The forecast channel's exceedance threshold and mean excess of squared errors
    # (pipeline.engine.anomaly.pot_step; 0: not seeded yet, a frame from before them).
    tu: float = 0.0
    tb: float = 0.0
    # The sustained-deviation channel (pipeline.engine.anomaly.sustained_step): the EW mean
    # of the value's standardised deviation from where it is expected, and the EW mean of
    # that mean's square (0: not seeded, a frame from before them).
    pm: float = 0.0
    pv: float = 0.0
    pq: float = 0.0  # steps since that channel was last at the threshold
    # The departure channel (pipeline.engine.anomaly.departure_step): values in the current
    # block, blocks so far, the last block's end at the threshold (1) or not; the block's
    # sum relative to the reference (the stream's first value), the largest departure so
    # far, and the block means [DEPARTURE_BLOCKS, F] (None: a frame from before them).
    dk: float = 0.0
    dn: float = 0.0
    dq: float = 0.0
    dl: float = 0.0  # the block of the stream's last frozen reading (or its first block)
    # The day channel (pipeline.engine.anomaly.day_step): the EW energy of the deviations,
    # its forgetting record, the current and the previous block's largest quiet energy,
    # the current block, the stream's first time (0: not started, a frame from before it).
    yq: float = 0.0
    yrec: float = 0.0
    yb: float = 0.0
    yp: float = 0.0
    yblk: float = 0.0
    yt0: float = 0.0
    yon: float = 0.0  # the incident's onset time while it lasts (0: quiet since)
    # The mean of the hours' error figures at the stream's recent values
    # (pipeline.engine.dayspread; 0: none yet, a frame from before it), and when the hours
    # began counting where that is after the profile's start (0: with the profile).
    tq: float = 0.0
    tt: float = 0.0
    ds: npt.NDArray[np.float64] | None = None  # [F]
    dref: npt.NDArray[np.float64] | None = None  # [F]
    dmax: npt.NDArray[np.float64] | None = None  # [F]
    db: npt.NDArray[np.float32] | None = None  # [DEPARTURE_BLOCKS, F]
    # The share of the stream's variance its profile leaves (pipeline.engine.stepper):
    # the EW mean of the squared standardised residual about where a value is expected
    # [F] (None: a frame from before it; 0: not learnt yet).
    rv: npt.NDArray[np.float64] | None = None
    # The largest deviations from the mean the stream has shown lately, above and below it
    # (pipeline.engine.anomaly.habit_step) [2 * HABIT_SLOTS, F] (None: a frame from
    # before them; 0: none yet).
    hm: npt.NDArray[np.float32] | None = None
    # The profile's mean absolute error by hour of day (pipeline.engine.dayspread)
    # [dayspread.HOURS] (None: a frame from before it; 0: not seen yet).
    te: npt.NDArray[np.float16] | None = None
    # The stream's daily profile (pipeline.engine.season: bins, levels, start, the profile
    # [BINS, F]) and the seasonal blend (pipeline.engine.blend: the two forecasters' last
    # one-step forecasts and the weight's moments). None: a frame from before them.
    sbin: float = 0.0
    st0: float = 0.0
    slev: npt.NDArray[np.float64] | None = None  # [F]
    sfc: npt.NDArray[np.float64] | None = None  # [F]
    mfc: npt.NDArray[np.float64] | None = None  # [F]
    bm: npt.NDArray[np.float64] | None = None  # [MOMENTS]
    # The profile's bins [bins, F] (StateStore.season_bins) as the store keeps them: float16
    # in the unit su [F], the week's trackers and level in sw [WEEK_STATE, F] (format 8,
    # pipeline.engine.season.Profiles); from an older frame float32 in sensor units with
    # the week's rows in place, and su, sw None.
    sp: npt.NDArray[np.float16] | npt.NDArray[np.float32] | None = None
    su: npt.NDArray[np.float32] | None = None
    sw: npt.NDArray[np.float32] | None = None
    ring_ref: npt.NDArray[np.float32] | None = None
    ring_unit: npt.NDArray[np.float32] | None = None

    def ring_values(self) -> F64:
        """The replay ring's inputs in sensor units, oldest first."""
        if self.ring_ref is None or self.ring_unit is None:
            return self.ring.astype(np.float64)
        return relative16.decode(self.ring, self.ring_ref, self.ring_unit)


@dataclasses.dataclass
class Columns:
    """Many streams' snapshots of one model version and layout, field by field: each
    :class:`Snapshot` field is an array with one row per stream (None: a field the frames
    predate). ``rows`` says where each stream came from (e.g. positions in a frame list)."""

    model: str
    version: str
    rows: list[int]
    cols: dict[str, npt.NDArray[Any] | None]

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, pick: I64) -> Columns:
        """The streams at positions ``pick``."""
        return Columns(
            self.model,
            self.version,
            [self.rows[i] for i in pick.tolist()],
            {k: None if v is None else v[pick] for k, v in self.cols.items()},
        )

    @classmethod
    def from_snapshots(cls, snaps: Sequence[Snapshot]) -> Columns:
        """Snapshots of one :func:`layout_of` as columns (rows: their positions)."""
        cols: dict[str, npt.NDArray[Any] | None] = {}
        for name in _SNAPSHOT_FIELDS:
            values = [getattr(s, name) for s in snaps]
            cols[name] = (
                None
                if values[0] is None
                else np.asarray(values)
                if np.ndim(values[0]) == 0
                else np.stack(values)
            )
        return cls(snaps[0].model, snaps[0].version, list(range(len(snaps))), cols)

    def snapshot(self, j: int) -> Snapshot:
        """Stream ``j`` as a :class:`Snapshot` (its arrays are views)."""
        kw: dict[str, Any] = {}
        for name in _SNAPSHOT_FIELDS:
            v = self.cols[name]
            kw[name] = None if v is None else v[j].item() if v.ndim == 1 else v[j]
        return Snapshot(model=self.model, version=self.version, **kw)


def layout_of(snap: Snapshot) -> tuple[object, ...]:
    """What snapshots must share to become one :class:`Columns`: model, version, and each
    field's shape (None for a field the snapshot lacks)."""
    return (
        snap.model,
        snap.version,
        *(None if (v := getattr(snap, n)) is None else np.shape(v) for n in _SNAPSHOT_FIELDS),
    )


@dataclasses.dataclass
class StepState:
    """The gathered state of ``B`` streams (copies; write back with ``scatter``)."""

    h: F16  # [L, B, H]
    c: F16  # [L, B, H]
    n: F64  # [B] normaliser count
    mean: F64  # [B, F]
    var: F64  # [B, F]
    fc: F64  # [B, horizon, F] last forecast, sensor units
    fs: F64  # [B, horizon, F] its scale, sensor units (NaN: no scale head)
    qlog: F64  # [B] log multiplier of the interval (adaptive conformal)
    gxy: F64  # [B] forecast gain: EW sum of predicted x actual change
    gxx: F64  # [B] ... of predicted change squared
    gn: F64  # [B] ... and the updates seen
    dlt: F64  # [B, F] the model's last raw predicted one-step change
    has_fc: npt.NDArray[np.bool_]  # [B]
    en: F64  # [B] errors seen
    es: F64  # [B] short-term error mean
    emu: F64  # [B] long-term error mean
    evar: F64  # [B] long-term error variance
    steps: I64  # [B] model steps since the last reset
    last_x: F64  # [B, F] previous value (stuck-sensor check)
    run: F64  # [B] consecutive steps with an unchanged value
    rep_p: F64  # [B] long-run rate of unchanged values
    lo: F64  # [B, F] running minimum (range novelty), NaN until the first value
    hi: F64  # [B, F] running maximum
    peak: F64  # [B] recent largest surprise, decaying (novelty)
    rec: F64  # [B] long-run rate of new records (range novelty)
    trate: F64  # [B] long-run rate of Gaussian surprises above tail_level
    tu: F64  # [B] forecast tail: threshold on squared errors (0: not seeded)
    tb: F64  # [B] forecast tail: mean excess over it
    pm: F64  # [B] sustained deviation: EW mean of the standardised deviation
    pv: F64  # [B] ... and the EW mean of its square (0: not seeded)
    pq: F64  # [B] ... and the steps since it was last at the threshold
    dk: F64  # [B] departure (pipeline.engine.anomaly.departure_step): values in the block
    dn: F64  # [B] ... blocks so far
    dq: F64  # [B] ... the last block's end at the threshold (1) or not (0)
    dl: F64  # [B] ... the block of the stream's last frozen reading
    yq: F64  # [B] day (pipeline.engine.anomaly.day_step): EW energy of the deviations
    yrec: F64  # [B] ... its forgetting record
    yb: F64  # [B] ... the current block's largest quiet energy
    yp: F64  # [B] ... the previous block's
    yblk: F64  # [B] ... the current block
    yt0: F64  # [B] ... the stream's first time (0: not started)
    yon: F64  # [B] ... the incident's onset time while it lasts (0: quiet since)
    ds: F64  # [B, F] ... the block's sum, relative to dref
    dref: F64  # [B, F] ... the stream's first value
    dmax: F64  # [B, F] ... the largest departure so far
    db: F32  # [B, DEPARTURE_BLOCKS, F] ... the block means, relative to dref
    rv: F64  # [B, F] the variance share the profile leaves (0: not learnt yet)
    hm: F32  # [B, 2 * HABIT_SLOTS, F] the largest recent deviations above and below the mean
    te: F16  # [B, HOURS] the profile's mean absolute error by hour of day (dayspread; 0: none)
    tq: F64  # [B] ... the mean of those hours' figures at recent values (0: none)
    tt: F64  # [B] ... when they began counting, if after the profile's start (0: with it)
    sp: F16  # [B, bins, F] daily profile's bins in the unit su (pipeline.engine.season)
    su: F32  # [B, F] ... that unit (a power of two; 0: none yet)
    sw: F32  # [B, WEEK_STATE, F] ... the week's trackers and slow level (sensor units)
    ss: F64  # [B, STAT_ROWS, F] ... its sums (season.row_stats; derived, rebuilt on a restore)
    sbin: F64  # [B] its bins (0: not started)
    slev: F64  # [B, F] deseasonalised level (NaN: not started)
    st0: F64  # [B] when the profile started
    sfc: F64  # [B, F] the seasonal one-step forecast (NaN: none)
    mfc: F64  # [B, F] the model's own one-step forecast (NaN: none)
    bm: F64  # [B, MOMENTS] the blend's mean errors and updates (pipeline.engine.blend)

    def profiles(self) -> season.Profiles:
        """The daily profiles' arrays (views: the season functions write through)."""
        return season.Profiles(self.sp, self.su, self.sw, self.ss)

    def finite_rows(self) -> npt.NDArray[np.bool_]:
        """Per stream: is the LSTM state and every statistic finite?"""
        return _finite_half(self.h) & _finite_half(self.c) & self.finite_statistics()

    def finite_statistics(self) -> npt.NDArray[np.bool_]:
        """Per stream: is every statistic beside the LSTM state finite, and within float32
        where the store keeps it so (``_F32_STATISTICS``: beyond, it would turn infinite
        there)? (``lo``/``hi``/``last_x`` start as NaN by design and follow the inputs,
        which are finite, so they are not checked.)"""
        ok = np.asarray(np.isfinite(self.fc).all(axis=(1, 2)), np.bool_)
        ok &= np.isfinite(self.mean).all(axis=1) & np.isfinite(self.var).all(axis=1)
        for name in _CHECKED_SCALARS:
            ok &= self._storable(name)
        # The profile (pipeline.engine.season) changes one bin per step, and its level
        # takes that bin in: a non-finite bin shows in the level, which is cheaper to check.
        ok &= self._storable("bm").all(axis=1)
        ok &= (self.sbin <= 0) | np.isfinite(self.slev).all(axis=1)
        ok &= np.isfinite(self.ds).all(axis=1) & np.isfinite(self.dmax).all(axis=1)
        ok &= np.isfinite(self.db).all(axis=(1, 2)) & self._storable("rv").all(axis=1)
        ok &= np.isfinite(self.hm).all(axis=(1, 2))
        return ok

    def _storable(self, name: str) -> npt.NDArray[np.bool_]:
        """Per value of statistic ``name``: finite, and within float32 if the store keeps
        it so (beyond, it would turn infinite there)."""
        value = getattr(self, name)
        out: npt.NDArray[np.bool_] = (
            np.abs(value) <= _F32_MAX if name in _F32_STATISTICS else np.isfinite(value)
        )
        return out


def _time_step(last: F64, ts: npt.ArrayLike) -> tuple[F16, F64]:
    """The ring's gap code for inputs at ``ts`` after one it holds at ``last`` (minutes in
    float16), and the time the ring then holds for them: ``last`` plus that gap, so that
    each input's time is off by its own gap's rounding, not by the sum of those after it.
    Where that is not known or the gap is beyond the codes (45 days), ``ts`` itself."""
    t = np.asarray(ts, np.float64)
    gap = np.clip((t - last) / 60.0, -relative16.LIMIT, relative16.LIMIT).astype(np.float16)
    held = last + gap.astype(np.float64) * 60.0
    reached = np.isfinite(held) & (np.abs(gap) < relative16.LIMIT)
    out: F64 = np.where(reached, held, t)
    return gap, out


def _finite_half(a: F16) -> npt.NDArray[np.bool_]:
    """Per stream of an LSTM state ``[L, B, H]`` in float16: is every value finite? From
    the bits (exponent all ones: inf or NaN), as ``np.isfinite(a).all(axis=(0, 2))``
    gives, in less than half its time: numpy has no fast float16 loop, and this check ran
    at ~0.3 µs an event (docs/benchmarks.md "Where the time goes")."""
    bits = np.bitwise_and(a.view(np.uint16), 0x7FFF)
    out: npt.NDArray[np.bool_] = bits.max(axis=(0, 2), initial=0) < 0x7C00
    return out


_CHECKED_SCALARS = (
    "n", "en", "es", "emu", "evar", "run", "rep_p", "peak", "rec", "trate", "qlog", "gxy", "gxx",
    "tu", "tb", "sbin", "st0", "pm", "pv", "pq", "dk", "dn", "dq", "dl",
    "yq", "yrec", "yb", "yp", "yblk", "yt0", "yon", "tq", "tt",
)  # fmt: skip
# Statistics the store keeps in float32 and a step reads in float64 (gather widens them,
# scatter rounds them back): rates, counts, and measures in the stream's own spread, none
# in sensor units and none a time, so float32's 7 digits hold what they need. Measured
# (benchmarks/narrow_state.py, docs/benchmarks.md "The channels' statistics in float32"):
# forecasts moved by at most 1e-5 of a series' std on nab-dev, no flag flipped. Counts stop
# at 2**24 (16.8M), where only "many" is asked of them (rates max(1 / (n + c), alpha),
# thresholds). Not ``peak``: a frozen sensor's surprise repeats exactly, and must not beat
# its own value rounded down (an alarm every refractory period: test_default_model). Not
# the departure channel's block indices ``dn``, ``dl``: they index a ring and are compared,
# and a 1 kHz stream makes 16.8M blocks of 15 values in three days.
_F32_STATISTICS = (
    "qlog", "gxy", "gxx", "gn", "en", "es", "emu", "evar", "run", "rep_p", "rec",
    "trate", "tu", "tb", "pm", "pv", "pq", "dk", "dq", "yq", "yrec", "yb", "yp",
    "yblk", "rv", "tq", "bm",
)  # fmt: skip
_F32_MAX = float(np.finfo(np.float32).max)
_FIELDS = [f.name for f in dataclasses.fields(StepState)]
_SNAPSHOT_FIELDS = [
    f.name for f in dataclasses.fields(Snapshot) if f.name not in ("model", "version")
]
# Per-stream scalars a snapshot carries and a store keeps under the same name.
_SNAPSHOT_SCALARS = (
    "n", "en", "es", "emu", "evar", "run", "rep_p", "peak", "rec", "trate", "qlog", "gxy", "gxx",
    "gn", "tu", "tb", "sbin", "st0", "pm", "pv", "pq", "dk", "dn", "dq", "dl",
    "yq", "yrec", "yb", "yp", "yblk", "yt0", "yon", "tq", "tt", "has_fc",
    "steps", "last_ts",
)  # fmt: skip
# The departure channel's vectors: zero (the channel starts afresh) in a frame before them.
_DEPARTURE_VECTORS = ("ds", "dref", "dmax", "db")
# The profile's and blend's per-feature vectors: NaN until known (a new stream, a frame
# from before them).
_SEASON_VECTORS = ("slev", "sfc", "mfc")
_STATE_AXIS1 = ("h", "c")  # arrays whose stream axis is 1
# What a model swap rebuilds by replaying the recent inputs (pipeline.engine.stepper.rebuild):
# the LSTM state and forecasts, and what calibrates the model's outputs on the stream (the
# interval multiplier, the gain, the forecast-error statistics; the last are also adopted
# from the old model, as the replay's prior).
_REBUILT_ON_SWAP = (
    "h", "c", "fc", "fs", "dlt", "mfc", "qlog", "gxy", "gxx", "gn",
    "en", "es", "emu", "evar", "tu", "tb",
)  # fmt: skip
# What describes the sensor rather than the model: kept across a model swap (and the
# forecast-error statistics, which the swap's replay then moves towards the new model's:
# _REBUILT_ON_SWAP).
_MODEL_INDEPENDENT = (
    "n",
    "mean",
    "var",
    "en",
    "es",
    "emu",
    "evar",
    "steps",
    "last_x",
    "run",
    "rep_p",
    "lo",
    "hi",
    "peak",
    "rec",
    "trate",
    "tu",
    "tb",
    "pm",
    "pv",
    "pq",
    "dk",
    "dn",
    "dq",
    "dl",
    "yq",
    "yrec",
    "yb",
    "yp",
    "yblk",
    "yt0",
    "yon",
    "ds",
    "dref",
    "dmax",
    "db",
    "rv",
    "hm",
    "te",
    "tq",
    "tt",
    "sp",
    "su",
    "sw",
    "ss",
    "sbin",
    "slev",
    "st0",
    "sfc",
    "last_ts",
    "last_seen",
    "ring_buf",
    "ring_ref",
    "ring_unit",
    "ring_gap",
    "ring_last",
    "ring_len",
    "part",
    "src_offset",
)


class StateStore:
    """Slot-addressed arrays for one model's streams."""

    h: F16
    c: F16
    n: F64
    mean: F64
    var: F64
    fc: F64
    fs: F64
    qlog: F64
    gxy: F64
    gxx: F64
    gn: F64
    dlt: F64
    has_fc: npt.NDArray[np.bool_]
    en: F64
    es: F64
    emu: F64
    evar: F64
    steps: I64
    last_x: F64
    run: F64
    rep_p: F64
    lo: F64
    hi: F64
    peak: F64
    rec: F64
    trate: F64
    tu: F64
    tb: F64
    pm: F64
    pv: F64
    pq: F64
    dk: F64
    dn: F64
    dq: F64
    dl: F64
    yq: F64
    yrec: F64
    yb: F64
    yp: F64
    yblk: F64
    yt0: F64
    yon: F64
    ds: F64
    dref: F64
    dmax: F64
    db: F32
    rv: F64
    hm: F32
    te: F16
    tq: F64
    tt: F64
    sp: F16
    su: F32
    sw: F32
    ss: F64
    sbin: F64
    slev: F64
    st0: F64
    sfc: F64
    mfc: F64
    bm: F64
    last_ts: F64
    last_seen: F64
    # The replay ring (push_inputs): [capacity, R, F] inputs as relative16 codes of the
    # row's reference and unit ([capacity, F] each); [capacity, R] each input's time as
    # minutes since the input before it, and [capacity] the newest input's time (NaN:
    # unknown); [capacity] the inputs pushed.
    ring_buf: F16
    ring_ref: F32
    ring_unit: F32
    ring_gap: F16
    ring_last: F64
    ring_len: I64
    part: I64
    src_offset: I64
    # [capacity] True: the stream's model state (_REBUILT_ON_SWAP) is still that of the
    # version a swap replaced, to be rebuilt by replay before anything reads it
    # (pipeline.engine.serving: a swap rebuilds streams when they are next used).
    stale: npt.NDArray[np.bool_]

    def __init__(
        self,
        *,
        layers: int,
        hidden: int,
        features: int,
        horizon: int,
        capacity: int = 1024,
        ring: int = 64,
        season_bins: int = BINS,
        prior_mu: float = 1.0,
        prior_var: float = 1.0,
        prior_rep: float = 0.1,
    ) -> None:
        self.layers, self.hidden, self.features, self.horizon = layers, hidden, features, horizon
        self.ring = ring
        self.season_bins = season_bins  # 0: no daily profile (pipeline.engine.season)
        self.prior_mu, self.prior_var, self.prior_rep = prior_mu, prior_var, prior_rep
        self.capacity = 0
        self._slot: dict[str, int] = {}
        self._ids: list[str | None] = []
        self._free: list[int] = []
        # Row views of the arrays a scatter writes (_row_views), by field: (array, views).
        self._views: dict[str, tuple[npt.NDArray[Any], list[npt.NDArray[Any]] | None]] = {}
        self._alloc(max(1, capacity))

    @classmethod
    def for_model(
        cls,
        meta: ModelMeta,
        *,
        capacity: int,
        ring: int,
        season_bins: int = BINS,
        anomaly: AnomalyParams | None = None,
    ) -> StateStore:
        """A store shaped for ``meta``'s network and features, its new streams starting
        from the priors of ``anomaly`` (default: the model's own)."""
        anom = anomaly or meta.anomaly
        return cls(
            layers=meta.layers,
            hidden=meta.hidden,
            features=len(meta.features),
            horizon=meta.horizon,
            capacity=capacity,
            ring=ring,
            season_bins=season_bins,
            prior_mu=anom.prior_mean,
            prior_var=anom.prior_std**2,
            prior_rep=anom.prior_rep,
        )

    # -- allocation -----------------------------------------------------------------

    def reserve(self, streams: int, *, touch: bool = True) -> slice:
        """Room for ``streams`` more streams in one allocation (a restore of 100k streams
        into a store that doubles as it fills copies every row ~log2 times). Returns the
        rows added (none if there was room). ``touch=False`` leaves the new rows' memory
        to :meth:`prefault`, which must then run before they are used."""
        old = self.capacity
        if len(self._free) < streams:
            self._alloc(self.capacity + streams - len(self._free), touch=touch)
        return slice(old, self.capacity)

    def prefault(self, rows: slice) -> None:
        """Write zeros, which they hold, to ``rows`` of every array: rows that
        :meth:`reserve` added untouched and nothing has used, then ask for huge pages
        (:mod:`pipeline.engine.pages`). The first write to fresh memory faults its pages
        in (100k streams: ~0.2 s, ~1-3 s had numpy advised huge pages before it); in a
        thread (numpy releases the GIL for it) that overlaps a restore's reading instead
        of its installing. Nothing may use these rows until it returns."""
        self._zero({*_FIELDS, *_MODEL_INDEPENDENT}, rows)
        self._advise()

    def _advise(self) -> None:
        pages.advise(getattr(self, name) for name in {*_FIELDS, *_MODEL_INDEPENDENT})

    def _zero(self, names: Iterable[str], rows: I64 | slice) -> None:
        for name in names:
            arr = getattr(self, name)
            if name in _STATE_AXIS1:
                arr[:, rows] = 0
            else:
                arr[rows] = 0

    def _alloc(self, capacity: int, *, touch: bool = True) -> None:
        """Grow every array to ``capacity`` rows. The arrays are allocated without numpy's
        huge-page advice, their new rows resident only once written (:func:`pages.zeros`)
        and, with ``touch``, faulted in at once and then advised (:mod:`pipeline.engine.pages`:
        advised first, their first writes would compact memory in the poll loop, seconds for
        a large store). Without ``touch`` they stay in 4 KB pages, faulted in as used."""
        old = self.capacity
        with pages.without_advice():
            self._grow(capacity)
        if touch:
            self.prefault(slice(old, capacity))

    def _grow(self, capacity: int) -> None:
        old = self.capacity
        L, H, F, Z, R = self.layers, self.hidden, self.features, self.horizon, self.ring

        def grow(name: str, shape: tuple[int, ...], dtype: type, axis: int = 0) -> None:
            # A step works in float64; the store keeps _F32_STATISTICS narrower.
            new = pages.zeros(shape, np.float32 if name in _F32_STATISTICS else dtype)
            if old:
                src = getattr(self, name)
                if axis == 0:
                    new[:old] = src
                else:
                    new[:, :old] = src
            setattr(self, name, new)

        grow("h", (L, capacity, H), STATE_DTYPE, axis=1)
        grow("c", (L, capacity, H), STATE_DTYPE, axis=1)
        grow("n", (capacity,), np.float64)
        grow("mean", (capacity, F), np.float64)
        grow("var", (capacity, F), np.float64)
        grow("fc", (capacity, Z, F), np.float64)
        grow("fs", (capacity, Z, F), np.float64)
        grow("qlog", (capacity,), np.float64)
        grow("gxy", (capacity,), np.float64)
        grow("gxx", (capacity,), np.float64)
        grow("gn", (capacity,), np.float64)
        grow("dlt", (capacity, F), np.float64)
        grow("has_fc", (capacity,), np.bool_)
        grow("en", (capacity,), np.float64)
        grow("es", (capacity,), np.float64)
        grow("emu", (capacity,), np.float64)
        grow("evar", (capacity,), np.float64)
        grow("steps", (capacity,), np.int64)
        grow("last_x", (capacity, F), np.float64)
        grow("run", (capacity,), np.float64)
        grow("rep_p", (capacity,), np.float64)
        grow("lo", (capacity, F), np.float64)
        grow("hi", (capacity, F), np.float64)
        grow("peak", (capacity,), np.float64)
        grow("rec", (capacity,), np.float64)
        grow("trate", (capacity,), np.float64)
        grow("tu", (capacity,), np.float64)
        grow("tb", (capacity,), np.float64)
        grow("pm", (capacity,), np.float64)
        grow("pv", (capacity,), np.float64)
        grow("pq", (capacity,), np.float64)
        grow("dk", (capacity,), np.float64)
        grow("dn", (capacity,), np.float64)
        grow("dq", (capacity,), np.float64)
        grow("dl", (capacity,), np.float64)
        for name in ("yq", "yrec", "yb", "yp", "yblk", "yt0", "yon"):
            grow(name, (capacity,), np.float64)
        grow("ds", (capacity, F), np.float64)
        grow("dref", (capacity, F), np.float64)
        grow("dmax", (capacity, F), np.float64)
        grow("db", (capacity, DEPARTURE_BLOCKS, F), np.float32)
        grow("rv", (capacity, F), np.float64)
        grow("hm", (capacity, 2 * HABIT_SLOTS, F), np.float32)
        grow("te", (capacity, dayspread.HOURS), np.float16)
        grow("tq", (capacity,), np.float64)
        grow("tt", (capacity,), np.float64)
        grow("sp", (capacity, self.season_bins, F), np.float16)
        grow("su", (capacity, F), np.float32)
        grow("sw", (capacity, season.WEEK_STATE, F), np.float32)
        grow("ss", (capacity, season.STAT_ROWS, F), np.float64)
        grow("sbin", (capacity,), np.float64)
        grow("slev", (capacity, F), np.float64)
        grow("st0", (capacity,), np.float64)
        grow("sfc", (capacity, F), np.float64)
        grow("mfc", (capacity, F), np.float64)
        grow("bm", (capacity, MOMENTS), np.float64)
        grow("last_ts", (capacity,), np.float64)
        grow("last_seen", (capacity,), np.float64)
        grow("ring_buf", (capacity, R, F), np.float16)
        grow("ring_ref", (capacity, F), np.float32)
        grow("ring_unit", (capacity, F), np.float32)
        grow("ring_gap", (capacity, R), np.float16)
        grow("ring_last", (capacity,), np.float64)
        grow("ring_len", (capacity,), np.int64)
        grow("part", (capacity,), np.int64)
        grow("src_offset", (capacity,), np.int64)
        grow("stale", (capacity,), np.bool_)
        self._ids.extend([None] * (capacity - old))
        self._free.extend(range(capacity - 1, old - 1, -1))
        self.capacity = capacity

    def _init_slots(self, slots: I64) -> None:
        self._zero(_FIELDS, slots)
        self.stale[slots] = False
        self.emu[slots] = self.prior_mu
        self.fs[slots] = np.nan
        self.last_x[slots] = np.nan
        self.rep_p[slots] = self.prior_rep
        self.lo[slots] = np.nan
        self.hi[slots] = np.nan
        for name in _SEASON_VECTORS:
            getattr(self, name)[slots] = np.nan
        self.evar[slots] = self.prior_var
        self.last_ts[slots] = -np.inf
        self.ring_len[slots] = 0
        self.ring_last[slots] = np.nan
        self.part[slots] = -1
        self.src_offset[slots] = -1

    # -- addressing -----------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._slot)

    def __contains__(self, stream_id: object) -> bool:
        return stream_id in self._slot

    def slot_of(self, stream_id: str) -> int | None:
        return self._slot.get(stream_id)

    def id_of(self, slot: int) -> str | None:
        return self._ids[slot]

    def stream_ids(self) -> list[str]:
        return list(self._slot)

    def live_slots(self) -> I64:
        """The slots that hold a stream."""
        return np.fromiter(self._slot.values(), np.int64, len(self._slot))

    def slots_for(self, stream_ids: Sequence[str], now: float, *, touch: bool = True) -> I64:
        """Slots of the given streams, allocating (and initialising) new ones. New slots are
        seen at ``now``; existing ones too unless ``touch`` is false (the caller then
        touches only the streams whose events it accepted)."""
        # One lookup per id in a comprehension, the rest as arrays: this runs for every
        # batch (the hot path) and for every stream a restore installs.
        get = self._slot.get
        out = np.fromiter([get(sid, -1) for sid in stream_ids], np.int64, len(stream_ids))
        missing = np.flatnonzero(out < 0)
        if len(missing):
            names = [stream_ids[i] for i in missing.tolist()]
            added = dict.fromkeys(names, -1)  # a batch may name a new stream more than once
            take: list[int] = []  # from the free list's end, as pop() would
            while len(take) < len(added):
                if not self._free:
                    # Doubled, but only the rows new streams use become resident (no
                    # prefault: pages.zeros): the other half would cost as much memory as
                    # the streams themselves, unused until they come (docs/benchmarks.md).
                    self._alloc(self.capacity * 2, touch=False)
                k = min(len(added) - len(take), len(self._free))
                take += self._free[len(self._free) - k :][::-1]
                del self._free[len(self._free) - k :]
            for sid, slot in zip(added, take, strict=True):
                added[sid] = slot
                self._ids[slot] = sid
            self._slot.update(added)
            out[missing] = [added[sid] for sid in names]
            fresh = np.asarray(take, np.int64)
            self._init_slots(fresh)
            self.last_seen[fresh] = now
        if touch:
            self.last_seen[out] = now
        return out

    def reset(self, slots: I64) -> None:
        """Cold-start streams in place (they keep their slot, partition and last-seen time)."""
        part, seen = self.part[slots].copy(), self.last_seen[slots].copy()
        self._init_slots(slots)
        self.part[slots], self.last_seen[slots] = part, seen

    def release(self, stream_ids: Sequence[str]) -> None:
        """Forget streams (e.g. when their partition is revoked)."""
        for sid in stream_ids:
            slot = self._slot.pop(sid, None)
            if slot is not None:
                self._ids[slot] = None
                self.stale[slot] = False
                self._free.append(slot)

    def evict_idle(
        self, now: float, ttl_s: float, before_release: Callable[[I64], None] | None = None
    ) -> list[tuple[str, int]]:
        """Free the slots of streams not seen for ``ttl_s`` (``before_release`` is called with
        them first, if any); returns their (id, partition)."""
        live = self.live_slots()
        if not len(live):
            return []
        idle = live[self.last_seen[live] < now - ttl_s]
        if len(idle) and before_release is not None:
            before_release(idle)
        gone = [(self._ids[s], int(self.part[s])) for s in idle.tolist()]
        self.release([sid for sid, _ in gone if sid is not None])
        return [(sid, part) for sid, part in gone if sid is not None]

    # -- batch access ---------------------------------------------------------------

    def gather(self, slots: I64) -> StepState:
        # take copies whole rows at once; fancy indexing walks a multi-dimensional
        # array element by element (3-4x slower for the profile, the LSTM state and the
        # block means at B=2000; docs/benchmarks.md). The method, not np.take: its
        # wrappers cost ~1 µs a call, and a step gathers ~60 arrays.
        rows = {
            name: getattr(self, name).take(slots, axis=1 if name in _STATE_AXIS1 else 0)
            for name in _FIELDS
        }
        for name in _F32_STATISTICS:
            rows[name] = rows[name].astype(np.float64)
        return StepState(**rows)

    def scatter(self, slots: I64, st: StepState) -> None:
        for name in _FIELDS:
            arr = getattr(self, name)
            value = getattr(st, name)
            views = self._row_views(name, arr)
            if views is None:
                if name in _STATE_AXIS1:
                    arr[:, slots] = value
                else:
                    arr[slots] = value
            elif name in _STATE_AXIS1:
                for layer, view in enumerate(views):
                    view[slots] = _as_rows(value[layer], arr.dtype, view.dtype)
            else:
                views[0][slots] = _as_rows(value, arr.dtype, views[0].dtype)

    def _row_views(self, name: str, arr: npt.NDArray[Any]) -> list[npt.NDArray[Any]] | None:
        """``arr``'s rows (per layer for the LSTM state) as one opaque item each (numpy's
        void type), so that a scatter copies a row at once: assigning a multi-dimensional
        array by fancy index copies it element by element (3-4x slower for the profile,
        the LSTM state and the block means at B=2000; docs/benchmarks.md). None: a field
        of one value per stream, or one not laid out in rows, assigned as it is. Cached
        per array, so an array replaced (a store grown) gets views of its own."""
        cached = self._views.get(name)
        if cached is not None and cached[0] is arr:
            return cached[1]
        parts = list(arr) if name in _STATE_AXIS1 else [arr]
        views: list[npt.NDArray[Any]] | None = None
        if arr.flags.c_contiguous and all(p.ndim > 1 and p[0].size > 1 for p in parts):
            views = [_void_rows(p) for p in parts]
        self._views[name] = (arr, views)
        return views

    def push_inputs(self, slots: I64, x: F64, ts: F64 | None = None) -> None:
        """Append one raw input per stream (and its time, if given) to its ring buffer,
        for model-swap replay.

        Inputs are kept as :mod:`pipeline.engine.relative16` codes: a row takes a new
        reference and unit fitted to its ring when the ring wraps (so the reference
        follows the stream) and when an input lies beyond the codes' range
        (:meth:`_rebase`). A time is kept as the minutes since the row's input before it,
        from which :meth:`recent_window` counts back from the newest input's time."""
        if self.ring == 0:
            return
        R = self.ring
        n = self.ring_len[slots]
        pos = n % R
        x = np.asarray(x, np.float64)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            codes = (x - self.ring_ref[slots]) / self.ring_unit[slots]
        rebase = (pos == 0) | ~(np.abs(codes) <= relative16.LIMIT).all(axis=1)
        if rebase.any():
            again = np.flatnonzero(rebase)
            self._rebase(slots[again], x[again], np.minimum(n[again], R))
            codes[again] = (x[again] - self.ring_ref[slots[again]]) / self.ring_unit[slots[again]]
        self.ring_buf[slots, pos] = codes.astype(np.float16)
        if ts is None:
            self.ring_gap[slots, pos] = np.nan
            self.ring_last[slots] = np.nan
        else:
            gap, self.ring_last[slots] = _time_step(self.ring_last[slots], ts)
            self.ring_gap[slots, pos] = gap
        self.ring_len[slots] += 1

    def _rebase(self, slots: I64, x: F64, held: I64) -> None:
        """Give the rings of ``slots`` a reference (the median of their ``held`` inputs and
        their next ones, ``x``: what most inputs lie close to, a spike or two apart) and a
        unit that holds all of those, re-encoding the held ones (one that is not finite,
        which only a damaged frame can bring, as the reference)."""
        values = self.ring_values(slots)
        # [B, R, F]: held, and finite
        kept = (np.arange(self.ring)[None, :] < held[:, None])[:, :, None] & np.isfinite(values)
        # [B, R + 1, F]: with the next inputs, which are always kept
        both = np.concatenate([values, x[:, None]], axis=1)
        both_kept = np.concatenate([kept, np.ones_like(kept[:, :1])], axis=1)
        pool = np.where(both_kept, both, np.inf)
        pool.sort(axis=1)  # the inputs not held (inf) last
        middle = (kept.sum(axis=1) // 2)[:, None, :]
        ref = np.take_along_axis(pool, middle, axis=1)[:, 0].astype(np.float32)
        codes, unit = relative16.about(both, ref, both_kept)
        self.ring_buf[slots] = np.where(kept, codes[:, : self.ring], np.float16(0))
        self.ring_ref[slots], self.ring_unit[slots] = ref, unit

    def ring_positions(self, slots: I64, k: int) -> I64:
        """``[B, k]``: the ring positions of the oldest ``k`` inputs each of ``slots`` holds,
        oldest first (a full ring's oldest sits at ``ring_len % ring``)."""
        n, R = self.ring_len[slots], self.ring
        start = np.where(n > R, n % max(R, 1), 0)
        out: I64 = (start[:, None] + np.arange(k)) % max(R, 1)
        return out

    def ring_values(self, slots: I64, cols: I64 | None = None) -> F64:
        """The inputs at ring positions ``cols [B, k]`` (default: all) of ``slots [B]``."""
        codes = self.ring_buf[slots] if cols is None else self.ring_buf[slots[:, None], cols]
        ref, unit = self.ring_ref[slots][:, None, :], self.ring_unit[slots][:, None, :]
        return relative16.decode(codes, ref, unit)

    def fill_rings(self, slots: I64, inputs: npt.ArrayLike, times: F64 | None = None) -> None:
        """Set the rings of ``slots`` to ``inputs [B, k, F]`` (oldest first; the newest
        ``ring`` of them are kept) taken at ``times [B, k]`` (None: not known, as after a
        restore: the changelog does not carry them)."""
        x = np.asarray(inputs, np.float64)
        kept = min(x.shape[1], self.ring)
        self.ring_len[slots] = kept
        self.ring_gap[slots] = np.nan
        self.ring_last[slots] = np.nan
        if not kept:
            return
        codes, ref, unit = relative16.fit(x[:, -kept:])
        self.ring_buf[slots, :kept] = codes
        self.ring_ref[slots], self.ring_unit[slots] = ref, unit
        if times is not None:
            t = np.asarray(times, np.float64)[:, -kept:]
            last = t[:, 0]
            for j in range(1, kept):
                self.ring_gap[slots, j], last = _time_step(last, t[:, j])
            self.ring_last[slots] = last

    def _install_ring(self, slots: I64, codes: npt.NDArray[Any], ref: F32, unit: F32) -> None:
        """Rings as a snapshot keeps them (:class:`Snapshot`: codes oldest first), times
        unknown; a ring whose reference or unit is not a finite number (a unit a positive
        one: only a damaged frame has others) starts empty."""
        kept = min(codes.shape[1], self.ring)
        if kept:
            self.ring_buf[slots, :kept] = codes[:, codes.shape[1] - kept :]
        self.ring_ref[slots], self.ring_unit[slots] = ref, unit
        usable = (np.isfinite(ref) & np.isfinite(unit) & (unit > 0)).all(axis=1)
        self.ring_len[slots] = np.where(usable, kept, 0)
        self.ring_gap[slots] = np.nan
        self.ring_last[slots] = np.nan

    def recent_inputs(self, slot: int) -> F32:
        """The ring buffer of ``slot`` in arrival order (oldest first)."""
        inputs, _, lengths = self.recent_window(np.asarray([slot], np.int64))
        out: F32 = inputs[0, self.ring - int(lengths[0]) :]
        return out

    def recent_window(self, slots: I64) -> tuple[F32, F64, I64]:
        """The rings of ``slots`` at once, for a replay: ``(inputs [B, R, F], times [B, R],
        lengths [B])``, each stream's last ``lengths`` entries right-aligned in arrival
        order (oldest first, ending at ``R - 1``; the rows before them hold zeros). Times
        as :meth:`recent_times` gives them."""
        R = self.ring
        slots = np.asarray(slots, np.int64)
        lengths = np.minimum(self.ring_len[slots], R)
        # Output column p holds the k-th oldest entry, k = p - (R - length), which sits at
        # (start + k) % R: start is the oldest entry's place once the ring has wrapped.
        start = np.where(self.ring_len[slots] > R, self.ring_len[slots] % max(R, 1), 0)
        k = np.arange(R)[None, :] - (R - lengths)[:, None]
        valid = k >= 0
        src = np.where(valid, (start[:, None] + k) % max(R, 1), 0)
        values = self.ring_values(slots, src)
        inputs: F32 = np.where(valid[:, :, None], values, 0.0).astype(np.float32)
        # Each input's time: the newest input's, less the gaps of the inputs after it.
        gaps = self.ring_gap[slots[:, None], src].astype(np.float64) * 60.0
        after = np.zeros_like(gaps)
        after[:, :-1] = np.cumsum(gaps[:, :0:-1], axis=1)[:, ::-1]
        with np.errstate(invalid="ignore"):
            phases = np.mod(self.ring_last[slots][:, None] - after, WEEK)
        times: F64 = np.where(valid, phases, 0.0)
        return inputs, times, lengths.astype(np.int64)

    def recent_times(self, slot: int) -> F64:
        """The times of :meth:`recent_inputs` as seconds into their week (NaN: unknown,
        e.g. after a restore: the changelog does not carry them)."""
        _, times, lengths = self.recent_window(np.asarray([slot], np.int64))
        out: F64 = times[0, self.ring - int(lengths[0]) :]
        return out

    def reset_dynamics(self, slots: I64) -> None:
        """Gap policy: forget LSTM state and the last forecast, keep scale and error stats."""
        self.h[:, slots] = 0
        self.c[:, slots] = 0
        self.has_fc[slots] = False
        self.steps[slots] = 0

    def lstm_state(self) -> dict[str, npt.NDArray[Any]]:
        """Copies of what a model swap rebuilds by replay (:data:`_REBUILT_ON_SWAP`), every
        slot: the model's own state on each stream."""
        return {name: getattr(self, name).copy() for name in _REBUILT_ON_SWAP}

    def takes_lstm_state(self, state: dict[str, npt.NDArray[Any]]) -> bool:
        """Does ``state`` (:meth:`lstm_state` of a store) fit this store's shapes?"""
        return all(state[name].shape == getattr(self, name).shape for name in _REBUILT_ON_SWAP)

    def install_lstm_state(self, state: dict[str, npt.NDArray[Any]]) -> None:
        """Take over another store's :meth:`lstm_state` (same slots and shapes) in place of
        a replay: the model goes on exactly as it stood there."""
        for name in _REBUILT_ON_SWAP:
            setattr(self, name, state[name])

    def adopt(self, other: StateStore) -> None:
        """Take over ``other``'s streams (same capacity) with their model-independent state:
        normaliser, error statistics, times and recent inputs. LSTM state and forecasts
        start from zero (a model swap rebuilds them by replay)."""
        if other.capacity != self.capacity or other.features != self.features:
            raise ValueError("adopt needs the same capacity and features")
        self._slot = dict(other._slot)
        self._ids = list(other._ids)
        self._free = list(other._free)
        for name in _MODEL_INDEPENDENT:
            getattr(self, name)[...] = getattr(other, name)

    def extract(self, slots: I64) -> StateStore:
        """A compact copy of the given streams (slot i of the copy is ``slots[i]``), e.g.
        for a snapshot written while this store moves on."""
        out = self.blank_copy(slots)
        self.copy_rows(out, np.arange(len(slots)), slots)
        return out

    def copy_rows(self, out: StateStore, at: I64, slots: I64) -> None:
        """Rows ``at`` of a :meth:`blank_copy` take these slots' state as it is now."""
        for name in {*_FIELDS, *_MODEL_INDEPENDENT}:
            arr, dst = getattr(self, name), getattr(out, name)
            if name in _STATE_AXIS1:
                dst[:, at] = arr[:, slots]
            else:
                dst[at] = arr[slots]

    def blank_copy(self, slots: I64) -> StateStore:
        """A compact store for the given streams (slot i is ``slots[i]``) whose rows are
        not filled yet: :meth:`copy_rows` fills them, all at once or a few at a time."""
        out = StateStore(
            layers=self.layers,
            hidden=self.hidden,
            features=self.features,
            horizon=self.horizon,
            capacity=1,
            ring=self.ring,
            season_bins=self.season_bins,
            prior_mu=self.prior_mu,
            prior_var=self.prior_var,
            prior_rep=self.prior_rep,
        )
        n = len(slots)
        # A copy lives for one snapshot: in 4 KB pages, whose first touch (in the poll
        # loop's copy turns) does not wait for the kernel to compact memory, as huge pages
        # would (pipeline.engine.pages); none asked for after.
        with pages.without_advice():
            for name in {*_FIELDS, *_MODEL_INDEPENDENT}:
                arr = getattr(self, name)
                shape = (
                    (arr.shape[0], n, *arr.shape[2:])
                    if name in _STATE_AXIS1
                    else (n, *arr.shape[1:])
                )
                setattr(out, name, np.empty(shape, arr.dtype))
        out.stale = np.zeros(n, np.bool_)  # a copy holds rows as they are (rebuilt first)
        ids = [self._ids[s] for s in slots.tolist()]
        out.capacity = len(ids)
        out._ids = list(ids)
        out._slot = {sid: i for i, sid in enumerate(ids) if sid is not None}
        out._free = []
        return out

    def streams_in(self, partitions: set[int]) -> list[str]:
        """Streams whose input comes from one of ``partitions``."""
        return [sid for sid, slot in self._slot.items() if int(self.part[slot]) in partitions]

    def snapshot(self, slot: int, model: str, version: str) -> Snapshot:
        """An immutable copy of one stream's state for the changelog."""
        held = min(int(self.ring_len[slot]), self.ring)
        return Snapshot(
            model=model,
            version=version,
            source_offset=int(self.src_offset[slot]),
            last_ts=float(self.last_ts[slot]),
            steps=int(self.steps[slot]),
            ring_len=int(self.ring_len[slot]),
            has_fc=bool(self.has_fc[slot]),
            n=float(self.n[slot]),
            en=float(self.en[slot]),
            es=float(self.es[slot]),
            emu=float(self.emu[slot]),
            evar=float(self.evar[slot]),
            run=float(self.run[slot]),
            rep_p=float(self.rep_p[slot]),
            peak=float(self.peak[slot]),
            rec=float(self.rec[slot]),
            trate=float(self.trate[slot]),
            lo=self.lo[slot].copy(),
            hi=self.hi[slot].copy(),
            last_x=self.last_x[slot].copy(),
            h=self.h[:, slot].copy(),
            c=self.c[:, slot].copy(),
            mean=self.mean[slot].copy(),
            var=self.var[slot].copy(),
            fc=self.fc[slot].copy(),
            ring=self.ring_buf[slot, self.ring_positions(np.asarray([slot]), held)[0]],
            ring_ref=self.ring_ref[slot].copy(),
            ring_unit=self.ring_unit[slot].copy(),
            fs=self.fs[slot].copy(),
            qlog=float(self.qlog[slot]),
            gxy=float(self.gxy[slot]),
            gxx=float(self.gxx[slot]),
            gn=float(self.gn[slot]),
            dlt=self.dlt[slot].copy(),
            tu=float(self.tu[slot]),
            tb=float(self.tb[slot]),
            pm=float(self.pm[slot]),
            pv=float(self.pv[slot]),
            pq=float(self.pq[slot]),
            dk=float(self.dk[slot]),
            dn=float(self.dn[slot]),
            dq=float(self.dq[slot]),
            dl=float(self.dl[slot]),
            yq=float(self.yq[slot]),
            yrec=float(self.yrec[slot]),
            yb=float(self.yb[slot]),
            yp=float(self.yp[slot]),
            yblk=float(self.yblk[slot]),
            yt0=float(self.yt0[slot]),
            yon=float(self.yon[slot]),
            ds=self.ds[slot].copy(),
            dref=self.dref[slot].copy(),
            dmax=self.dmax[slot].copy(),
            db=self.db[slot].copy(),
            rv=self.rv[slot].copy(),
            hm=self.hm[slot].copy(),
            te=self.te[slot].copy(),
            tq=float(self.tq[slot]),
            tt=float(self.tt[slot]),
            sbin=float(self.sbin[slot]),
            st0=float(self.st0[slot]),
            slev=self.slev[slot].copy(),
            sfc=self.sfc[slot].copy(),
            mfc=self.mfc[slot].copy(),
            bm=self.bm[slot].copy(),
            sp=self.sp[slot].copy(),
            su=self.su[slot].copy(),
            sw=self.sw[slot].copy(),
        )

    def load(self, stream_id: str, snap: Snapshot, partition: int, now: float) -> int:
        """Install a restored snapshot (shapes must match this store); returns the slot."""
        (slot,) = self.load_many(
            [stream_id], Columns.from_snapshots([snap]), np.asarray([partition]), now
        ).tolist()
        return int(slot)

    def load_many(self, stream_ids: Sequence[str], cols: Columns, parts: I64, now: float) -> I64:
        """Install restored streams from columns (shapes must match this store); returns
        their slots."""
        c = cols.cols
        h, fc = column(c, "h"), column(c, "fc")
        if h.shape[1:] != (self.layers, self.hidden) or fc.shape[1:] != (
            self.horizon,
            self.features,
        ):
            raise ValueError("snapshot shapes do not match this model")
        slots = self.slots_for(stream_ids, now)
        self.stale[slots] = False  # a stream held already takes the restored state whole
        for name in ("h", "c"):
            getattr(self, name)[:, slots] = np.swapaxes(column(c, name), 0, 1)
        for name in (*_SNAPSHOT_SCALARS, "mean", "var", "fc", "last_x", "lo", "hi"):
            getattr(self, name)[slots] = column(c, name)
        for name, missing in (("fs", np.nan), ("dlt", 0.0), ("bm", 0.0)):
            v = c[name]
            getattr(self, name)[slots] = missing if v is None else v
        for name in _SEASON_VECTORS:
            v = c[name]
            getattr(self, name)[slots] = np.nan if v is None else v
        # (The profile's residual share is learnt afresh from a frame before it, format 10,
        # the stream's habit from a frame before it, format 11, and its errors by hour
        # from a frame before them, format 12.)
        for name in (*_DEPARTURE_VECTORS, "rv", "hm", "te"):
            v = c[name]
            getattr(self, name)[slots] = 0.0 if v is None else v
        if c["te"] is None:
            # The hours begin now, however old the profile: counted from its start, an
            # empty hour would be judged by its first value for days.
            last = column(c, "last_ts")
            self.tt[slots] = np.where(np.isfinite(last), last, 0.0)
        sp, su, sw = c["sp"], c["su"], c["sw"]
        if sp is None or sp.shape[1:] != self.sp.shape[1:]:
            # Frames from before the profile, or from a scorer with another number of
            # bins: the profile starts afresh.
            self.sbin[slots] = 0.0
            packed = season.Profiles.empty(len(slots), self.season_bins, self.features)
        elif su is None or sw is None:
            # A frame from before the 16-bit bins: into the store's form.
            packed = season.Profiles.pack(sp.astype(np.float32), self.sbin[slots])
        else:
            # As the store keeps it; the sums are derived, rebuilt from what is kept.
            packed = season.Profiles(sp.astype(np.float16), su, sw, np.zeros(0))
            packed.ss = season.row_stats(packed, self.sbin[slots])
        self.sp[slots], self.su[slots] = packed.sp, packed.su
        self.sw[slots], self.ss[slots] = packed.sw, packed.ss
        self.part[slots], self.src_offset[slots] = parts, column(c, "source_offset")
        ref, unit = c["ring_ref"], c["ring_unit"]
        if ref is None or unit is None:
            self.fill_rings(slots, column(c, "ring"))  # sensor values: a frame before format 14
        else:
            self._install_ring(slots, column(c, "ring"), ref, unit)
        return slots

    def profiles(self, slots: I64) -> season.Profiles:
        """Copies of the profiles of ``slots``."""
        return season.Profiles(self.sp[slots], self.su[slots], self.sw[slots], self.ss[slots])

    def stale_slots(self) -> I64:
        """The slots whose model state a swap has yet to rebuild (see :attr:`stale`)."""
        return np.flatnonzero(self.stale)

    def memory_bytes(self) -> int:
        arrays = {*_FIELDS, *_MODEL_INDEPENDENT, "stale"}
        return int(sum(getattr(self, n).nbytes for n in arrays))


def _void_rows(arr: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """A C-contiguous ``[N, ...]`` array as ``[N]`` items of one row's bytes each (a view)."""
    row = arr.dtype.itemsize * int(np.prod(arr.shape[1:]))
    out: npt.NDArray[Any] = arr.reshape(len(arr), -1).view(np.dtype((np.void, row)))[:, 0]
    return out


def _as_rows(
    values: npt.NDArray[Any], dtype: np.dtype[Any], item: np.dtype[Any]
) -> npt.NDArray[Any]:
    """``values [B, ...]`` as ``B`` row items of ``item`` (cast to ``dtype`` first, as an
    assignment would)."""
    v = np.ascontiguousarray(values, dtype)
    out: npt.NDArray[Any] = v.reshape(len(v), -1).view(item)[:, 0]
    return out


def column(cols: dict[str, npt.NDArray[Any] | None], name: str) -> npt.NDArray[Any]:
    """``cols[name]``, which a restore needs (ValueError if the frames lack it)."""
    v = cols[name]
    if v is None:
        raise ValueError(f"snapshot columns lack {name}")
    return v
