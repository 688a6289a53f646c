"""One LSTM step for a batch of streams in onnxruntime.

The ONNX graph is a single step: ``x [B, F + C], h [L, B, H], c [L, B, H]`` →
``forecast [B, horizon, F], scale [B, horizon, F], h_out, c_out`` with a dynamic batch
axis (``scale``: the predictive distribution's scale in normalised units; models from
before it have no ``scale`` output and keep working without intervals). The scorer
gathers the states of the streams in a batch, calls :meth:`StepSession.step`
once, and scatters the new states back.

The LSTM state is kept between steps in float16 (:data:`STATE_DTYPE`: half the bytes of
the largest per-stream arrays). The exported graph computes in float32 as trained; the
session wraps it with Cast nodes, so the conversions run inside onnxruntime (numpy's
float16 conversion would cost more than the step saves: ``benchmarks/narrow_state.py``),
and clips ``c`` to float16's range first (an infinite cell state would turn NaN).
Rounding the state to float16 moved no flag on nab-dev or the generated corpus and no
forecast's MAE (the same benchmark; docs/benchmarks.md).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from pipeline.engine.registry import ModelMeta
from pipeline.engine.state import STATE_DTYPE
from pipeline.errors import ModelRejected

__all__ = ["INPUTS", "OUTPUTS", "POINT_OUTPUTS", "STATE_DTYPE", "StepSession"]

INPUTS = ("x", "h", "c")
OUTPUTS = ("forecast", "scale", "h_out", "c_out")
POINT_OUTPUTS = ("forecast", "h_out", "c_out")  # models without a scale head
F32 = npt.NDArray[np.float32]
F16 = npt.NDArray[np.float16]
_F16_MAX = 65504.0


def _half_state(model: onnx.ModelProto) -> bytes:
    """``model`` (changed in place) with its state inputs and outputs in float16, cast at
    the boundary; serialised for onnxruntime."""
    g = model.graph
    casts_in, casts_out = [], []
    for inp in g.input:
        if inp.name in ("h", "c"):
            wide = f"{inp.name}__float"
            for node in g.node:
                node.input[:] = [wide if i == inp.name else i for i in node.input]
            inp.type.tensor_type.elem_type = TensorProto.FLOAT16
            casts_in.append(helper.make_node("Cast", [inp.name], [wide], to=TensorProto.FLOAT))
    for out in g.output:
        if out.name in ("h_out", "c_out"):
            wide, bounded = f"{out.name}__float", f"{out.name}__bounded"
            for node in g.node:
                node.output[:] = [wide if o == out.name else o for o in node.output]
                node.input[:] = [wide if i == out.name else i for i in node.input]
            lo, hi = f"{out.name}__lo", f"{out.name}__hi"
            g.initializer.extend(
                [
                    helper.make_tensor(lo, TensorProto.FLOAT, [], [-_F16_MAX]),
                    helper.make_tensor(hi, TensorProto.FLOAT, [], [_F16_MAX]),
                ]
            )
            casts_out.append(helper.make_node("Clip", [wide, lo, hi], [bounded]))
            casts_out.append(
                helper.make_node("Cast", [bounded], [out.name], to=TensorProto.FLOAT16)
            )
            out.type.tensor_type.elem_type = TensorProto.FLOAT16
    nodes = [*casts_in, *g.node, *casts_out]
    del g.node[:]
    g.node.extend(nodes)
    data: bytes = model.SerializeToString()
    return data


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
            graph = _half_state(onnx.load(str(meta.onnx_path)))
            self._session = ort.InferenceSession(
                graph, sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnx and onnxruntime raise their own untyped errors
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
            np.zeros((m.layers, B, m.hidden), STATE_DTYPE),
            np.zeros((m.layers, B, m.hidden), STATE_DTYPE),
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
        self, x: F32, h: F16, c: F16, *, checked: bool = True
    ) -> tuple[F32, F32 | None, F16, F16]:
        """One step for ``B`` streams; returns ``(forecast, scale, h_out, c_out)`` (scale
        None for a model without a scale head; the state in :data:`STATE_DTYPE`)."""
        try:
            outs = self._session.run(self._outputs, {"x": x, "h": h, "c": c})
        except Exception as exc:
            if checked:
                raise ModelRejected(f"inference failed for {self.meta.onnx_path}: {exc}") from exc
            raise ModelRejected(f"{self.meta.onnx_path} fails on a test step: {exc}") from exc
        if len(outs) == 4:
            return outs[0], outs[1], outs[2], outs[3]
        return outs[0], None, outs[1], outs[2]
