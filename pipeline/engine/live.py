"""Live evidence: how well a model forecasts the events it serves, and the verdicts on it.

On live traffic the next event is the ground truth of every forecast, so a model can be
judged on data that no training run saw. A :class:`Tally` sums, over scored events that
had a forecast, the error of that forecast (``abs_error``: mean ``|x - forecast|`` in the
stream's spread, comparable across streams and models), its negative log density under
the served interval's distribution, and the alarms raised.

Two verdicts use it (:class:`LiveRules`):

* **shadow → champion**: a shadow version is scored on exactly the events the champion
  scores (paired). Once both have ``promote_after`` compared forecasts, the shadow is
  promoted if its error is below the champion's by ``margin`` and it does not raise
  more alarms (beyond a Poisson allowance of two standard deviations); otherwise it is
  rejected. Neither model was trained on these events.
* **rollback**: after the champion changes, the previous one keeps running beside it
  (paired, as a shadow); once both have ``rollback_after`` compared forecasts, the new
  one is rolled back if its error exceeds the previous one's ``1 + rollback_margin``
  times.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import numpy.typing as npt

from pipeline.errors import ConfigError

__all__ = ["LiveRules", "Tally", "Verdict", "judge_rollback", "judge_shadow"]

F64 = npt.NDArray[np.float64]


@dataclasses.dataclass(frozen=True)
class LiveRules:
    """When live evidence is enough, and what it must show (0 events: never decide)."""

    promote_after: int = 0
    margin: float = 0.02
    rollback_after: int = 0
    rollback_margin: float = 0.1

    def __post_init__(self) -> None:
        if self.promote_after < 0 or self.rollback_after < 0:
            raise ConfigError("promote_after and rollback_after must be >= 0 (0: off)")
        if not 0.0 <= self.margin < 1.0 or self.rollback_margin < 0.0:
            raise ConfigError("margin must be in [0, 1) and rollback_margin >= 0")


@dataclasses.dataclass
class Tally:
    """Sums over the compared forecasts of one model."""

    n: int = 0
    error: float = 0.0
    nll: float = 0.0
    nll_n: int = 0
    alarms: int = 0

    def add(self, abs_error: F64, nll: F64, alarms: npt.NDArray[np.bool_]) -> None:
        """Add events (aligned arrays; NaN ``abs_error``: no forecast yet, not counted)."""
        ok = np.isfinite(abs_error)
        self.n += int(ok.sum())
        self.error += float(abs_error[ok].sum())
        has_nll = ok & np.isfinite(nll)
        self.nll_n += int(has_nll.sum())
        self.nll += float(nll[has_nll].sum())
        self.alarms += int((alarms & ok).sum())

    @property
    def mae(self) -> float:
        return self.error / self.n if self.n else math.nan

    @property
    def mean_nll(self) -> float:
        return self.nll / self.nll_n if self.nll_n else math.nan

    def to_json(self) -> dict[str, float | int]:
        return {"events": self.n, "mae": self.mae, "nll": self.mean_nll, "alarms": self.alarms}


@dataclasses.dataclass(frozen=True)
class Verdict:
    decided: bool
    accept: bool
    reason: str


WAIT = Verdict(False, False, "not enough live evidence yet")


def judge_shadow(champion: Tally, shadow: Tally, rules: LiveRules) -> Verdict:
    """Promote the shadow, reject it, or wait (paired tallies over the same events)."""
    if rules.promote_after <= 0 or min(champion.n, shadow.n) < rules.promote_after:
        return WAIT
    allowance = champion.alarms + 2.0 * math.sqrt(champion.alarms + 1.0)
    facts = (
        f"over {shadow.n} live events: MAE {shadow.mae:.4f} vs champion {champion.mae:.4f}, "
        f"alarms {shadow.alarms} vs {champion.alarms}"
    )
    if shadow.alarms > allowance:
        return Verdict(True, False, f"raises more alarms: {facts}")
    if shadow.mae <= champion.mae * (1.0 - rules.margin):
        return Verdict(True, True, f"forecasts better by more than {rules.margin:.0%}: {facts}")
    return Verdict(True, False, f"does not forecast better by {rules.margin:.0%}: {facts}")


def judge_rollback(before: Tally, after: Tally, rules: LiveRules) -> Verdict:
    """Roll the new champion back, keep it, or wait (paired tallies over the same events)."""
    if rules.rollback_after <= 0 or min(before.n, after.n) < rules.rollback_after:
        return WAIT
    facts = (
        f"over its first {after.n} live events: MAE {after.mae:.4f} vs "
        f"{before.mae:.4f} of the previous champion on the same events"
    )
    if after.mae > before.mae * (1.0 + rules.rollback_margin):
        return Verdict(True, True, f"worse by more than {rules.rollback_margin:.0%}: {facts}")
    return Verdict(True, False, f"within {rules.rollback_margin:.0%}: {facts}")
