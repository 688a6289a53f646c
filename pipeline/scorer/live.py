"""Live evidence per served model: shadow scoring, promotion on it, and rollback.

Per poll batch (called by the batch scorer once the champion has scored, step 3 of the
checkpoint protocol), :meth:`LiveJudge.observe`:

1. counts the champion's forecasts of warm streams (metrics, role ``champion``) and,
   every ``DRIFT_EVENTS`` of them, sets its drift ratio: their mean error over the same
   measure on its validation data (``validation.live_mae`` in model.json), and its input
   drift: the population stability index of the normalised inputs over the last day of
   event time against its validation inputs (``validation.input_hist``,
   :mod:`pipeline.engine.drift`; the inputs do not depend on the model, so the day
   carries over a swap and is compared with the new model's reference);
2. if another version runs beside it — the registry's ``SHADOW`` version (role
   ``shadow``), or after a change of champion the previous one (role ``previous``) —
   scores the events the champion accepted with that version's own copy of every
   stream's state (taken over as a swap would, so both measure errors in the same
   stream units), and adds both models' forecasts of the events *both* forecast to a
   paired tally (and alarm agreement). Its outputs go nowhere and a failure in it never
   touches the champion's: it is logged and that version stopped.

Between batches (called by the housekeeper after model swaps), :meth:`LiveJudge.decide`:

3. follows the registry's ``SHADOW``: starts, replaces or stops the shadow (a version
   that does not load is refused once, logged and counted);
4. judges the shadow (:func:`pipeline.engine.live.judge_shadow`): promoted (CURRENT; the
   champion then swaps as on any promotion, rebuilding every stream's state) or
   rejected; either way the verdict and both tallies go into the shadow version's
   model.json (``live_evidence``) and SHADOW is cleared;
5. after the champion changed (a promotion from anywhere), runs the previous one beside
   it and judges both on the same ``rollback_after`` events
   (:func:`pipeline.engine.live.judge_rollback`): a worse new one is rolled back to the
   previous (``live_rollback`` in its model.json); the version rolled back to is not
   watched. A registry SHADOW waits until that judgement is made.

The other version's state lives in memory only (it is not checkpointed): after a restart or a
rebalance it warms up again, and its evidence starts afresh. Decisions are taken by
every scorer that has them switched on (``shadow_promote_after``, ``rollback_after``),
each on the partitions it owns; switch them on in one instance of a group.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import numpy.typing as npt

from pipeline.config import ScorerConfig
from pipeline.engine import drift
from pipeline.engine.events import DecodedBatch
from pipeline.engine.live import LiveRules, Tally, judge_rollback, judge_shadow
from pipeline.engine.registry import Registry
from pipeline.engine.serving import Scored, ServedModel
from pipeline.errors import RegistryError, describe
from pipeline.metrics import ScorerMetrics

__all__ = ["LiveJudge"]

log = logging.getLogger(__name__)


DRIFT_EVENTS = 2000


class _Watch:
    """One model's live comparison."""

    def __init__(self, version: str) -> None:
        self.version = version  # the champion
        self.recent = Tally()  # its forecasts since the last drift ratio
        self.inputs = np.zeros(drift.BINS, np.int64)  # ... and where their inputs fell
        self.day = drift.DayOfInputs()  # ... and over the last day of event time
        self.unwatched: str | None = None  # a version rolled back to: not judged again
        self.other: ServedModel | None = None  # the version run beside the champion
        self.role = "shadow"  # ... the registry's SHADOW, or the "previous" champion
        self.refused: str | None = None
        self.paired = (Tally(), Tally())  # champion, other on the events both forecast

    def stop_other(self) -> None:
        self.other, self.role, self.paired = None, "shadow", (Tally(), Tally())


def _alarms(scored: Scored, threshold: float) -> npt.NDArray[np.bool_]:
    out: npt.NDArray[np.bool_] = (np.nan_to_num(scored.score) >= threshold) & scored.warm
    return out


class LiveJudge:
    def __init__(
        self,
        config: ScorerConfig,
        registry: Registry,
        models: dict[str, ServedModel],
        metrics: ScorerMetrics,
    ) -> None:
        self.rules = LiveRules(
            config.shadow_promote_after,
            config.shadow_margin,
            config.rollback_after,
            config.rollback_margin,
        )
        self.registry = registry
        self.models = models
        self.metrics = metrics
        self.watches = {name: _Watch(m.version) for name, m in models.items()}
        self.decide()  # a shadow named in the registry runs from the first event

    def shadow_of(self, name: str) -> ServedModel | None:
        """The version running beside model ``name``'s champion, if any."""
        return self.watches[name].other

    # -- per batch ------------------------------------------------------------------

    def observe(self, served: ServedModel, batch: DecodedBatch, scored: Scored, now: float) -> None:
        w = self.watches[served.name]
        if scored.abs_error is None or scored.nll is None or w.version != served.version:
            return  # a swap since the last decide(): its evidence starts there
        alarms = _alarms(scored, served.threshold)
        # 1. The champion, on warm streams only (before, the stream's spread that scales
        #    the error is barely known).
        error = np.where(scored.warm, scored.abs_error, np.nan)
        self._count(served.name, "champion", error, alarms)
        w.recent.add(error, scored.nll, alarms)
        if len(batch.ts):
            w.day.saw(float(np.nanmin(batch.ts)))
        if scored.inputs is not None:
            w.inputs += drift.counts(scored.inputs[np.isfinite(error)])
        if w.recent.n >= DRIFT_EVENTS:
            validation = served.meta.raw.get("validation", {})
            reference = validation.get("live_mae")
            if isinstance(reference, float) and reference > 0:
                self.metrics.live_drift.labels(served.name).set(w.recent.mae / reference)
            w.day.add(float(np.nanmax(batch.ts)), w.inputs)
            hist, day = validation.get("input_hist"), w.day.day()
            if isinstance(hist, list) and len(hist) == drift.BINS and day is not None:
                self.metrics.live_input_psi.labels(served.name).set(drift.psi(hist, day))
            w.recent, w.inputs = Tally(), np.zeros(drift.BINS, np.int64)
        # 2. The version beside it, on the events the champion accepted.
        if w.other is None:
            return
        try:
            self._beside(w, w.other, batch, scored, alarms, now)
        except Exception as exc:  # it must never cost the champion anything
            log.error(
                "model %s: %s %s failed and was stopped: %s",
                served.name, w.role, w.other.version, describe(exc),
            )  # fmt: skip
            w.refused = w.other.version
            w.stop_other()
            self.metrics.refused.labels(served.name).inc()

    def _beside(
        self,
        w: _Watch,
        shadow: ServedModel,
        batch: DecodedBatch,
        scored: Scored,
        alarms: npt.NDArray[np.bool_],
        now: float,
    ) -> None:
        sh = shadow.score(batch, scored.rows, now)
        assert sh.abs_error is not None and sh.nll is not None
        assert scored.abs_error is not None and scored.nll is not None
        _, ic, js = np.intersect1d(scored.rows, sh.rows, return_indices=True)
        both = np.isfinite(scored.abs_error[ic]) & np.isfinite(sh.abs_error[js])
        both &= scored.warm[ic] & sh.warm[js]
        ic, js = ic[both], js[both]
        shadow_alarms = _alarms(sh, shadow.threshold)[js]
        champ, shad = w.paired
        champ.add(scored.abs_error[ic], scored.nll[ic], alarms[ic])
        shad.add(sh.abs_error[js], sh.nll[js], shadow_alarms)
        self._count(shadow.name, w.role, sh.abs_error[js], shadow_alarms)
        if shad.nll_n:
            self.metrics.live_nll.labels(shadow.name, w.role).set(shad.mean_nll)
            self.metrics.live_nll.labels(shadow.name, "champion").set(champ.mean_nll)
        agree = self.metrics.shadow_agreement
        a, b = alarms[ic], shadow_alarms
        for outcome, n in (("both", a & b), ("champion_only", a & ~b), ("shadow_only", ~a & b)):
            if n.any():
                agree.labels(shadow.name, outcome).inc(int(n.sum()))

    def _count(
        self, name: str, role: str, abs_error: npt.NDArray[np.float64],
        alarms: npt.NDArray[np.bool_],
    ) -> None:  # fmt: skip
        ok = np.isfinite(abs_error)
        if ok.any():
            self.metrics.live_forecasts.labels(name, role).inc(int(ok.sum()))
            self.metrics.live_error.labels(name, role).inc(float(abs_error[ok].sum()))
            self.metrics.live_alarms.labels(name, role).inc(int((alarms & ok).sum()))

    # -- between batches ------------------------------------------------------------

    def decide(self) -> None:
        for name, served in self.models.items():
            w = self.watches[name]
            try:
                self._follow_champion(w, served)
                self._follow_shadow(w, served)
                self._judge_shadow(w, served)
                self._judge_rollback(w, served)
            except RegistryError as exc:
                log.error("model %s: live decisions paused: %s", name, exc)

    def _follow_champion(self, w: _Watch, served: ServedModel) -> None:
        if served.version == w.version:
            return
        previous, watched = w.version, served.version != w.unwatched
        w.version, w.unwatched, w.recent = served.version, None, Tally()
        w.inputs = np.zeros(drift.BINS, np.int64)
        w.stop_other()  # its pairing was with the old champion
        if not (watched and self.rules.rollback_after):
            log.info("model %s: champion %s -> %s", served.name, previous, served.version)
            return
        try:
            w.other, w.role = served.pinned(previous), "previous"
        except RegistryError as exc:
            log.error(
                "model %s: cannot run %s beside its successor: %s", served.name, previous, exc
            )
            return
        log.info(
            "model %s: champion %s -> %s; the previous one runs beside it until judged",
            served.name, previous, served.version,
        )  # fmt: skip

    def _follow_shadow(self, w: _Watch, served: ServedModel) -> None:
        if w.role == "previous":
            return  # a rollback judgement first
        want = self.registry.shadow(served.name)
        if want == served.version:
            want = None
        have = w.other.version if w.other is not None else None
        if want == have or want == w.refused:
            return
        w.stop_other()
        if want is None:
            log.info("model %s: shadow %s stopped", served.name, have)
            return
        try:
            w.other, w.role = served.pinned(want), "shadow"
        except RegistryError as exc:
            log.error("model %s: shadow %s refused: %s", served.name, want, exc)
            w.refused = want
            self.metrics.refused.labels(served.name).inc()
            return
        log.info("model %s: shadowing %s beside %s", served.name, want, served.version)

    def _judge_shadow(self, w: _Watch, served: ServedModel) -> None:
        if w.other is None or w.role != "shadow":
            return
        champ, shad = w.paired
        verdict = judge_shadow(champ, shad, self.rules)
        if not verdict.decided:
            return
        version = w.other.version
        self.registry.annotate(
            served.name,
            version,
            "live_evidence",
            {
                "decided_at": time.time(),
                "promoted": verdict.accept,
                "reason": verdict.reason,
                "champion": {"version": served.version, **champ.to_json()},
                "shadow": shad.to_json(),
            },
        )
        if verdict.accept:
            self.registry.promote(served.name, version)
        self.registry.set_shadow(served.name, None)
        w.stop_other()
        decision = "shadow_promoted" if verdict.accept else "shadow_rejected"
        self.metrics.lifecycle.labels(served.name, decision).inc()
        log.warning("model %s: shadow %s %s: %s", served.name, version, decision, verdict.reason)

    def _judge_rollback(self, w: _Watch, served: ServedModel) -> None:
        if w.other is None or w.role != "previous":
            return
        after, before = w.paired
        verdict = judge_rollback(before, after, self.rules)
        if not verdict.decided:
            return
        previous = w.other.version
        record = {
            "decided_at": time.time(),
            "rolled_back": verdict.accept,
            "reason": verdict.reason,
            "previous": {"version": previous, **before.to_json()},
            "this": after.to_json(),
        }
        self.registry.annotate(served.name, served.version, "live_rollback", record)
        w.stop_other()
        if verdict.accept:
            self.registry.promote(served.name, previous)
            w.unwatched = previous
            self.metrics.lifecycle.labels(served.name, "rolled_back").inc()
            log.warning(
                "model %s: %s rolled back to %s: %s",
                served.name, served.version, previous, verdict.reason,
            )  # fmt: skip
        else:
            self.metrics.lifecycle.labels(served.name, "kept").inc()
            log.info("model %s: %s kept: %s", served.name, served.version, verdict.reason)
