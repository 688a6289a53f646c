"""One LSTM step for a batch of streams in onnxruntime.

The ONNX graph is a single step: ``x [B, F + C], h [L, B, H], c [L, B, H]`` →
``forecast [B, horizon, F], scale [B, horizon, F], h_out, c_out`` with a dynamic batch
axis (``scale``: the predictive distribution's scale in normalised units; models from
before it have no ``scale`` output and keep working without intervals). The scorer
gathers the states of the streams in a batch, calls :meth:`StepSession.step`
once, and scatters the new states back.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from pipeline.engine.registry import ModelMeta
from pipeline.errors import ModelRejected

__all__ = ["INPUTS", "OUTPUTS", "POINT_OUTPUTS", "StepSession"]

INPUTS = ("x", "h", "c")
OUTPUTS = ("forecast", "scale", "h_out", "c_out")
POINT_OUTPUTS = ("forecast", "h_out", "c_out")  # models without a scale head
F32 = npt.NDArray[np.float32]


class StepSession:
    """A validated onnxruntime session for one registry version."""

    def __init__(self, meta: ModelMeta, threads: int = 1) -> None:
        self.meta = meta
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                str(meta.onnx_path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelRejected(f"onnxruntime cannot load {meta.onnx_path}: {exc}") from exc
        self._check_signature()
        self.layers, self.hidden, self.features = meta.layers, meta.hidden, len(meta.features)

    def _check_signature(self) -> None:
        ins = tuple(i.name for i in self._session.get_inputs())
        outs = tuple(o.name for o in self._session.get_outputs())
        if ins != INPUTS or outs not in (OUTPUTS, POINT_OUTPUTS):
            raise ModelRejected(
                f"{self.meta.onnx_path}: expected inputs {INPUTS} and outputs {OUTPUTS} "
                f"(or {POINT_OUTPUTS}), got {ins} and {outs}"
            )
        self._outputs = outs
        self.probabilistic = outs == OUTPUTS
        if self.probabilistic != (self.meta.distribution is not None):
            raise ModelRejected(
                f"{self.meta.onnx_path}: model.json distribution {self.meta.distribution!r} "
                f"disagrees with the graph's outputs {outs}"
            )
        m = self.meta
        B = 3
        f, s, h, c = self.step(
            np.zeros((B, len(m.features) + len(m.covariates)), np.float32),
            np.zeros((m.layers, B, m.hidden), np.float32),
            np.zeros((m.layers, B, m.hidden), np.float32),
            checked=False,
        )
        if f.shape != (B, m.horizon, len(m.features)) or h.shape != (m.layers, B, m.hidden):
            raise ModelRejected(
                f"{m.onnx_path}: shapes {f.shape}, {h.shape} disagree with model.json "
                f"(horizon {m.horizon}, features {len(m.features)}, layers {m.layers}, "
                f"hidden {m.hidden})"
            )
        if not (np.isfinite(f).all() and np.isfinite(h).all() and np.isfinite(c).all()):
            raise ModelRejected(f"{m.onnx_path}: a step from zero state gives non-finite outputs")
        if s is not None and not (s.shape == f.shape and np.all(s > 0)):
            raise ModelRejected(
                f"{m.onnx_path}: the scale output must be positive, shaped as forecast"
            )

    def step(
        self, x: F32, h: F32, c: F32, *, checked: bool = True
    ) -> tuple[F32, F32 | None, F32, F32]:
        """One step for ``B`` streams; returns ``(forecast, scale, h_out, c_out)`` (scale
        None for a model without a scale head)."""
        try:
            outs = self._session.run(self._outputs, {"x": x, "h": h, "c": c})
        except Exception as exc:
            if checked:
                raise ModelRejected(f"inference failed for {self.meta.onnx_path}: {exc}") from exc
            raise ModelRejected(f"{self.meta.onnx_path} fails on a test step: {exc}") from exc
        if len(outs) == 4:
            return outs[0], outs[1], outs[2], outs[3]
        return outs[0], None, outs[1], outs[2]
