"""Registry atomicity, champion/challenger, rollback, and the periodic trainer's failure handling."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.engine.registry import Registry
from pipeline.errors import DataError, ModelRejected, RegistryError
from training.schedule import TrainerMetrics, run_periodically
from training.trainer import decide_promotion


def _copy_registry(src: Path, dst: Path) -> tuple[Registry, str, dict[str, object]]:
    shutil.copytree(src, dst)
    reg = Registry(dst)
    v = reg.current("tiny")
    assert v is not None
    doc = json.loads((dst / "tiny" / v / "model.json").read_text())
    return reg, v, doc


def test_crash_during_write_leaves_no_visible_version(
    tiny_registry: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg, v1, doc = _copy_registry(tiny_registry, tmp_path / "r")
    onnx = tmp_path / "r" / "tiny" / v1 / "model.onnx"

    def crash(*_a: object, **_k: object) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(os, "rename", crash)
    with pytest.raises(OSError):
        reg.write_version("tiny", "v2", onnx, {**doc, "version": "v2"})
    monkeypatch.undo()
    assert reg.versions("tiny") == [v1]
    assert reg.current("tiny") == v1
    reg.meta("tiny")  # still loads and verifies
    reg.cleanup_tmp("tiny")
    assert not list((tmp_path / "r" / "tiny").glob(".tmp-*"))


def test_crash_during_promote_leaves_current_valid(
    tiny_registry: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg, v1, doc = _copy_registry(tiny_registry, tmp_path / "r")
    reg.write_version(
        "tiny", "v2", tmp_path / "r" / "tiny" / v1 / "model.onnx", {**doc, "version": "v2"}
    )

    def crash(*_a: object, **_k: object) -> None:
        raise OSError("killed")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        reg.promote("tiny", "v2")
    monkeypatch.undo()
    assert reg.current("tiny") == v1
    reg.promote("tiny", "v2")
    assert reg.current("tiny") == "v2"
    assert reg.rollback("tiny") == v1
    assert reg.current("tiny") == v1


def test_corrupted_versions_are_refused(tiny_registry: Path, tmp_path: Path) -> None:
    reg, v1, doc = _copy_registry(tiny_registry, tmp_path / "r")
    reg.write_version(
        "tiny", "v2", tmp_path / "r" / "tiny" / v1 / "model.onnx", {**doc, "version": "v2"}
    )
    (tmp_path / "r" / "tiny" / "v2" / "model.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelRejected, match="sha256"):
        reg.meta("tiny", "v2")
    with pytest.raises(ModelRejected):
        reg.promote("tiny", "v2")
    assert reg.current("tiny") == v1
    with pytest.raises(RegistryError, match="no promoted version"):
        reg.meta("other")


@pytest.mark.parametrize(
    ("mode", "challenger", "champion", "expected"),
    [
        ("auto", 0.5, None, True),
        ("auto", 0.4, 0.5, True),
        ("auto", 0.5, 0.5, False),
        ("auto", 0.6, 0.5, False),
        ("always", 0.9, 0.1, True),
        ("never", 0.1, None, False),
    ],
)
def test_champion_challenger(
    mode: str, challenger: float, champion: float | None, expected: bool
) -> None:
    promoted, reason = decide_promotion(mode, challenger, champion)  # type: ignore[arg-type]
    assert promoted is expected and reason


def test_periodic_trainer_counts_failures_and_keeps_going(tmp_path: Path) -> None:
    calls = []

    def once(_metrics: TrainerMetrics) -> int:
        calls.append(1)
        if len(calls) == 1:
            raise DataError("topic empty")
        return 0

    metrics = TrainerMetrics()
    out = tmp_path / "trainer.prom"
    code = run_periodically(once, "0s", metrics_file=str(out), metrics=metrics, max_runs=2)
    assert code == 0 and len(calls) == 2
    text = out.read_text()
    assert "statecast_trainer_failures_total 1.0" in text
    assert "statecast_trainer_runs_total 2.0" in text


def test_a_derived_version_serves_the_same_network_with_other_anomaly_parameters(
    tiny_registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`statecast models derive`: a new version, not promoted unless asked, with the same
    ONNX file (same sha256, same forecasts), every other file of the source, the changed
    parameters and where they came from; the source untouched."""
    from pipeline.cli import main
    from training.evaluate import replay
    from training.synthetic import generate

    reg, v1, _ = _copy_registry(tiny_registry, tmp_path / "r")
    before = (tmp_path / "r" / "tiny" / v1 / "model.json").read_text()
    where = ["--registry", str(tmp_path / "r"), "--model", "tiny"]
    assert (
        main(["models", "derive", *where, "--set", "threshold=0.7", "--set", "tail_forecast=true"])
        == 0
    )
    (v2,) = set(reg.versions("tiny")) - {v1}
    assert v2 in capsys.readouterr().out and reg.current("tiny") == v1
    src, new = reg.meta("tiny", v1), reg.meta("tiny", v2)
    assert new.sha256 == src.sha256 and new.version == v2
    assert new.anomaly.threshold == 0.7 and new.anomaly.tail_forecast is True
    assert new.anomaly.prior_std == src.anomaly.prior_std  # the rest as calibrated
    assert new.raw["derived_from"] == {
        "version": v1, "anomaly": {"threshold": 0.7, "tail_forecast": True}
    }  # fmt: skip
    files = {p.name for p in (tmp_path / "r" / "tiny" / v1).iterdir()}
    assert {p.name for p in (tmp_path / "r" / "tiny" / v2).iterdir()} == files
    assert (tmp_path / "r" / "tiny" / v1 / "model.json").read_text() == before
    series = [generate(streams=1, length=300, seed=5)[0].series()]
    (a,), (b,) = replay(src, series), replay(new, series)
    np.testing.assert_array_equal(a.forecast, b.forecast)
    # --promote serves it, and a derive of a derive records its own source.
    assert main(["models", "derive", v2, *where, "--set", "refractory=20", "--promote"]) == 0
    v3 = reg.current("tiny")
    assert v3 not in (v1, v2) and reg.meta("tiny").anomaly.threshold == 0.7
    assert reg.meta("tiny").raw["derived_from"]["version"] == v2


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ("no_such_field=1", "not an anomaly parameter"),
        ('threshold="high"', "takes a float"),
        ("tail_forecast=1", "takes a bool"),
        ("departure_block=15.5", "takes a int"),
        ("threshold", "KEY=VALUE"),
        ("threshold=not json", "KEY=VALUE"),
        ("departure_fit=1", "refused"),
    ],
)
def test_derive_refuses_what_the_scorer_could_not_read_and_writes_nothing(
    tiny_registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], pair: str, message: str
) -> None:
    from pipeline.cli import main

    reg, v1, _ = _copy_registry(tiny_registry, tmp_path / "r")
    code = main(
        ["models", "derive", "--registry", str(tmp_path / "r"), "--model", "tiny", "--set", pair]
    )
    assert code == 2 and message in capsys.readouterr().err
    assert reg.versions("tiny") == [v1] and reg.current("tiny") == v1
