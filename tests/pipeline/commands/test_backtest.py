"""``statecast backtest`` against the real broker: causal refreshes, live swaps, one score
per row."""

from __future__ import annotations

import csv
import itertools
from collections import Counter
from pathlib import Path

import pytest

from pipeline.commands.backtest import BacktestJob, backtest
from pipeline.config import KafkaConfig
from training.synthetic import generate, write_csv

pytestmark = pytest.mark.integration


def test_refreshes_learn_only_from_the_past_and_the_scorer_serves_what_they_promote(
    kafka_config: KafkaConfig, tiny_registry: Path, tmp_path: Path
) -> None:
    feeds = generate(streams=2, length=600, step_s=300.0, seed=9)  # ~2 days each
    write_csv(feeds, tmp_path / "data")
    job = BacktestJob(
        inputs=(tmp_path / "data",),
        output=tmp_path / "out",
        registry=tiny_registry,
        model="tiny",
        kafka=kafka_config,
        refresh_s=86400.0 / 2,
        max_epochs=1,
        progress=False,
    )
    periods = backtest(job)
    assert len(periods) >= 3
    assert sum(p.rows for p in periods) == 2 * 600
    for before, after in itertools.pairwise(periods):
        assert before.trained is not None and before.trained_until is not None
        assert before.trained_until < before.end  # causal: nothing from the period ahead
        assert before.warm_from == before.version  # fine-tuned from what was served
        assert after.version == (before.trained if before.promoted else before.version)
    served: Counter[str] = Counter()
    for f in feeds:
        with (tmp_path / "out" / f"{f.name}.csv").open() as fh:
            rows = list(csv.DictReader(fh))
        assert len(rows) == 600  # one score per input row
        served.update(r["model_version"] for r in rows)
    assert set(served) == {p.version for p in periods}
