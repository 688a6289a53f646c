"""Drift references recorded afterwards for a version trained without them
(training.references, `statecast models reference`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.engine.registry import Registry
from pipeline.errors import DataError
from training.references import backfill


def _forget_references(reg: Registry, model: str) -> tuple[str, dict[str, object]]:
    version = reg.current(model)
    assert version is not None
    validation = dict(reg.meta(model, version).raw["validation"])
    recorded = {k: validation.pop(k) for k in ("live_mae", "input_hist")}
    reg.annotate(model, version, "validation", validation)  # as a version trained before
    return version, recorded


def test_the_references_are_those_training_records(
    tiny_registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """From the data it was trained on, the same figures the training run wrote (same
    streams, same gate window, same replay); the ONNX file and its sha256 untouched."""
    shutil.copytree(tiny_registry, tmp_path / "models")
    reg = Registry(tmp_path / "models")
    version, recorded = _forget_references(reg, "tiny")
    data = tiny_registry.parent / "data"  # where the tiny_registry fixture trained it
    code = main(
        ["models", "reference", "--registry", str(tmp_path / "models"), "--model", "tiny",
         "--data", str(data)]
    )  # fmt: skip
    assert code == 0 and "drift references recorded" in capsys.readouterr().out
    validation = reg.meta("tiny", version).raw["validation"]  # verifies the sha256
    assert validation["live_mae"] == pytest.approx(recorded["live_mae"], rel=1e-6)
    np.testing.assert_allclose(validation["input_hist"], recorded["input_hist"], atol=1e-9)
    assert validation["references_backfilled"]["data"] == [str(data)]
    assert validation["mean_mae"] > 0  # the rest of validation kept


def test_data_of_other_features_or_too_short_is_refused(
    tiny_registry: Path, tmp_path: Path
) -> None:
    shutil.copytree(tiny_registry, tmp_path / "models")
    reg = Registry(tmp_path / "models")
    other = tmp_path / "other.csv"
    other.write_text("timestamp,a,b\n" + "".join(f"{60 * i},1,2\n" for i in range(100)))
    with pytest.raises(DataError, match="features"):
        backfill(reg, "tiny", None, [other])
    short = tmp_path / "short.csv"
    short.write_text("timestamp,value\n" + "".join(f"{60 * i},1\n" for i in range(10)))
    with pytest.raises(DataError, match="points"):
        backfill(reg, "tiny", None, [short])
