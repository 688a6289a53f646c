"""The step session's float16 state interface: the exported graph computes in float32, the
scorer keeps the state in float16, the casts (and a clip to float16's range) run in
onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from pipeline.engine.inference import STATE_DTYPE, StepSession, _half_state
from pipeline.engine.registry import Registry

REPO = Path(__file__).resolve().parents[3]


def test_the_state_goes_in_and_comes_out_in_float16_and_matches_the_exported_graph() -> None:
    meta = Registry(REPO / "exported_models").meta("default")
    session = StepSession(meta)
    exported = ort.InferenceSession(str(meta.onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    B = 64
    x = rng.normal(size=(B, len(meta.features) + len(meta.covariates))).astype(np.float32)
    h = np.tanh(rng.normal(size=(meta.layers, B, meta.hidden))).astype(STATE_DTYPE)
    c = (3 * rng.normal(size=(meta.layers, B, meta.hidden))).astype(STATE_DTYPE)
    f, s, h_out, c_out = session.step(x, h, c)
    assert h_out.dtype == c_out.dtype == STATE_DTYPE
    want = exported.run(
        ["forecast", "scale", "h_out", "c_out"],
        {"x": x, "h": h.astype(np.float32), "c": c.astype(np.float32)},
    )
    # The same float32 computation from the same (float16) state; only the state's
    # outputs are rounded, to float16's relative precision.
    np.testing.assert_array_equal(f, want[0])
    assert s is not None
    np.testing.assert_array_equal(s, want[1])
    np.testing.assert_allclose(h_out, want[2], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(c_out, want[3], rtol=1e-3, atol=1e-4)


def test_a_state_beyond_float16_range_is_clipped_not_infinite() -> None:
    """A graph whose cell state leaves float16's range (times 1e6): clipped to ±65504, where a
    plain cast would give ±inf and the next step NaN."""
    shape = ["B", 2]
    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["x"], ["forecast"]),
            helper.make_node("Identity", ["h"], ["h_out"]),
            helper.make_node("Mul", ["c", "big"], ["c_out"]),
        ],
        "step",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name in ("x", "h", "c")],
        [
            helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
            for name in ("forecast", "h_out", "c_out")
        ],
        [helper.make_tensor("big", TensorProto.FLOAT, [], [1e6])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    half = _half_state(model)
    session = ort.InferenceSession(half, providers=["CPUExecutionProvider"])
    x = np.zeros((1, 2), np.float32)
    state = np.asarray([[0.5, -2.0]], np.float16)
    _, h_out, c_out = session.run(None, {"x": x, "h": state, "c": state})
    assert h_out.dtype == c_out.dtype == np.float16
    np.testing.assert_array_equal(h_out, state)
    np.testing.assert_array_equal(c_out, np.asarray([[65504.0, -65504.0]], np.float16))
    types = [i.type.tensor_type.elem_type for i in onnx.load_from_string(half).graph.input]
    assert types == [TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.FLOAT16]
