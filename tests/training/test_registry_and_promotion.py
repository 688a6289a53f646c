"""Registry atomicity, champion/challenger, rollback, and the periodic trainer's failure handling."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

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
