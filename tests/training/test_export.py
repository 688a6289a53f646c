"""ONNX export: the single-step graph reproduces torch over carried steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from pipeline.errors import TrainingError
from training.config import TrainConfig
from training.export import export_step_model, parity_max_diff
from training.model import LSTMForecaster


@pytest.mark.parametrize(
    ("features", "layers", "horizon", "cell"),
    [(1, 2, 5, "lstm"), (3, 1, 2, "lstm"), (2, 3, 4, "lstm"), (1, 2, 5, "gru")],
)
def test_step_parity_and_dynamic_batch(
    tmp_path: Path, features: int, layers: int, horizon: int, cell: str
) -> None:
    torch.manual_seed(features + layers)
    cfg = TrainConfig(layers=layers, hidden=24, horizon=horizon, cell=cell)
    model = LSTMForecaster(features, cfg)
    report = export_step_model(model, tmp_path / "model.onnx")
    assert report.parity_max_abs_diff <= 1e-4
    assert cell.upper() in report.ops
    sess = ort.InferenceSession(str(tmp_path / "model.onnx"))
    for batch in (1, 7, 129):
        f, s, h, c = sess.run(
            None,
            {
                "x": np.zeros((batch, model.inputs), np.float32),
                "h": np.zeros((layers, batch, 24), np.float32),
                "c": np.zeros((layers, batch, 24), np.float32),
            },
        )
        assert f.shape == s.shape == (batch, horizon, features)
        assert h.shape == c.shape == (layers, batch, 24)
        assert (s > 0).all()  # a scale


def test_parity_detects_a_model_that_differs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = LSTMForecaster(1, TrainConfig(hidden=8))
    export_step_model(model, tmp_path / "model.onnx")
    with torch.no_grad():
        model.head.bias.add_(0.01)  # torch changes after export: parity must notice
    assert parity_max_diff(model, tmp_path / "model.onnx") > 1e-3


class _ExportsSomethingElse(LSTMForecaster):
    """Differs from itself under export: the ONNX graph adds 0.01 to every forecast that
    eager torch does not, as a broken exporter or an unsupported op would."""

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        forecast, new_state = super().forward(x, state)
        if torch.onnx.is_in_onnx_export():
            forecast = forecast + 0.01
        return forecast, new_state


def test_export_fails_above_tolerance(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _ExportsSomethingElse(1, TrainConfig(hidden=8))
    with pytest.raises(TrainingError, match="parity"):
        export_step_model(model, tmp_path / "model.onnx")  # the default tolerance


def test_a_faithful_export_passes_the_default_tolerance(tmp_path: Path) -> None:
    torch.manual_seed(0)
    export_step_model(LSTMForecaster(1, TrainConfig(hidden=8)), tmp_path / "model.onnx")
