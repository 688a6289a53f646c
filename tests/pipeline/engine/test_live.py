"""Verdicts on live evidence: promote, reject, roll back, or wait."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.engine.live import LiveRules, Tally, judge_rollback, judge_shadow
from pipeline.errors import ConfigError


def _tally(errors: list[float], alarms: int = 0, nll: float = 1.0) -> Tally:
    t = Tally()
    e = np.asarray(errors, float)
    flags = np.zeros(len(e), bool)
    flags[:alarms] = True
    t.add(e, np.full(len(e), nll), flags)
    return t


def test_a_tally_counts_only_events_that_had_a_forecast() -> None:
    t = _tally([1.0, math.nan, 3.0], alarms=2)
    assert (t.n, t.mae, t.alarms, t.mean_nll) == (2, 2.0, 1, 1.0)
    assert math.isnan(Tally().mae)


def test_a_shadow_waits_for_evidence_then_is_promoted_only_when_better_by_the_margin() -> None:
    rules = LiveRules(promote_after=100, margin=0.05)
    champion = _tally([1.0] * 100)
    assert not judge_shadow(champion, _tally([0.5] * 99), rules).decided
    better = judge_shadow(champion, _tally([0.94] * 100), rules)
    assert better.decided and better.accept
    slightly = judge_shadow(champion, _tally([0.96] * 100), rules)
    assert slightly.decided and not slightly.accept
    assert not judge_shadow(champion, _tally([0.5] * 100), LiveRules()).decided  # off


def test_a_shadow_that_raises_more_alarms_is_rejected_however_well_it_forecasts() -> None:
    rules = LiveRules(promote_after=100)
    champion = _tally([1.0] * 1000, alarms=4)
    noisy = judge_shadow(champion, _tally([0.5] * 1000, alarms=12), rules)
    assert noisy.decided and not noisy.accept and "alarms" in noisy.reason
    # Within the Poisson allowance (4 + 2 sqrt(5) = 8.5), more alarms are not held against it.
    assert judge_shadow(champion, _tally([0.5] * 1000, alarms=8), rules).accept


def test_a_new_champion_worse_than_the_previous_one_is_rolled_back() -> None:
    rules = LiveRules(rollback_after=50, rollback_margin=0.1)
    previous = _tally([1.0] * 60)
    assert not judge_rollback(previous, _tally([2.0] * 49), rules).decided
    worse = judge_rollback(previous, _tally([1.2] * 60), rules)
    assert worse.decided and worse.accept
    kept = judge_rollback(previous, _tally([1.05] * 60), rules)
    assert kept.decided and not kept.accept


@pytest.mark.parametrize("bad", [{"promote_after": -1}, {"margin": 1.0}, {"rollback_margin": -0.1}])
def test_rules_are_validated(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        LiveRules(**bad)  # type: ignore[arg-type]
