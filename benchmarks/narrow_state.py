"""Narrower per-stream state, measured: what the store's narrower types change in the
forecasts and scores, and what the conversions cost per event.

    .venv/bin/python benchmarks/narrow_state.py [--data ../shared/data/nab-dev] [--corpus 2026]
        [--json out.json]

* **Effect**: every series is replayed through the engine's stepping code
  (:func:`training.evaluate.replay`) with the store as it is, then again with a variant
  of it: since 2026-12-06 the one variant is the channels' statistics in float64, as they
  were before the store kept them in float32 (``pipeline.engine.state._F32_STATISTICS``).
  Printed per variant: the largest and median deviation of the one-step forecast (in
  each series' standard deviations), the one-step MAE ratio of the variant to the store
  as it is (geometric mean over series), and the records whose flag (score ≥ the model's
  threshold) flips. (The variants that rounded ``h``, ``c`` and the profile to 16 bits,
  which the store has kept so since 2026-12-03, ran at commit 7f06615: docs/benchmarks.md.)
* **Cost**: the gather and scatter of one batch of 2,000 streams from a store of 100k,
  as the scorer does at every step, for the profile (288 bins) and for ``h``/``c``
  (2 arrays of 2 layers of 64) in float32, float16 converted by numpy, and int16 in a
  power-of-two unit per stream (fixed point), in µs per event (median of 7 rounds of 20);
  and h/c kept in float16 and cast by onnxruntime (Cast nodes, as the step model the
  scorer runs does: pipeline.engine.inference).
* ``--step-rounds N``: the whole model-only step (as ``statecast bench`` times it) with the
  state in float16, as the scorer keeps it, and in float32 without the casts, in one
  source tree, N runs each in processes of their own, alternating which goes first.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.commands.replay import collect_streams  # noqa: E402
from pipeline.engine import state  # noqa: E402
from pipeline.engine.registry import Registry  # noqa: E402
from training.evaluate import Replayed, replay  # noqa: E402

F16_MAX_EXP = 14  # a unit of max|x| / 2**14 keeps every value below float16's 65504


def _pow2_unit(x: np.ndarray) -> np.ndarray:
    """Per stream (axis 0), the power of two that brings max|x| to at most 2**14."""
    peak = np.nanmax(np.abs(x.reshape(len(x), -1)), axis=1, initial=0.0)
    exp = np.ceil(np.log2(np.maximum(peak, 1e-30))) - F16_MAX_EXP
    out: np.ndarray = np.exp2(exp).astype(np.float32)
    return out


@contextmanager
def _wide_statistics() -> Iterator[None]:
    """The store as before 2026-12-06: every channel statistic in float64."""
    kept = state._F32_STATISTICS
    state._F32_STATISTICS = ()
    try:
        yield
    finally:
        state._F32_STATISTICS = kept


VARIANTS: dict[str, Callable[[], AbstractContextManager[None]]] = {
    "channel statistics in float64 (before 2026-12-06)": _wide_statistics,
}


def _compare(
    streams: list[Any], base: list[Replayed], alt: list[Replayed], threshold: float
) -> dict[str, float]:
    dev, ratios, flips, records = [], [], 0, 0
    for s, a, b in zip(streams, base, alt, strict=True):
        std = float(np.nanstd(s.values)) or 1.0
        d = np.abs(a.forecast[:, 0, 0] - b.forecast[:, 0, 0]) / std
        dev.append(float(np.nanmax(d)))
        mae_a = np.nanmean(np.abs(s.values[1:, 0] - a.forecast[:-1, 0, 0]))
        mae_b = np.nanmean(np.abs(s.values[1:, 0] - b.forecast[:-1, 0, 0]))
        ratios.append(max(float(mae_b / mae_a), 1e-9) if mae_a > 0 else 1.0)
        fa = np.nan_to_num(a.score) >= threshold
        fb = np.nan_to_num(b.score) >= threshold
        flips += int((fa != fb).sum())
        records += len(fa)
    return {
        "max_forecast_deviation_std": max(dev),
        "median_forecast_deviation_std": float(np.median(dev)),
        "mae_ratio_geomean": float(np.exp(np.mean(np.log(ratios)))),
        "flag_flips": flips,
        "records": records,
    }


def effect(meta: Any, streams: list[Any]) -> dict[str, dict[str, float]]:
    base = replay(meta, streams)
    out = {}
    for name, variant in VARIANTS.items():
        with variant():
            alt = replay(meta, streams)
        out[name] = _compare(streams, base, alt, meta.anomaly.threshold)
    return out


def cost(batch: int = 2000, streams: int = 100_000, rounds: int = 7) -> dict[str, float]:
    """µs per event of a gather and a scatter of the profile and of h/c."""
    rng = np.random.default_rng(0)
    slots = np.sort(rng.choice(streams, batch, replace=False))
    shapes = {"profile": (streams, 288, 1), "h, c": (streams, 2 * 64 * 2)}
    out: dict[str, float] = {}
    for what, shape in shapes.items():
        values = rng.normal(size=shape).astype(np.float32)
        unit = _pow2_unit(values)
        stores = {
            "float32": values.copy(),
            "float16": values.astype(np.float16),
            "int16 fixed point": np.rint(values / unit.reshape(-1, *[1] * (values.ndim - 1)))
            .clip(-32767, 32767)
            .astype(np.int16),
        }
        for kind, store in stores.items():
            u = unit.reshape(-1, *[1] * (values.ndim - 1))

            def step(kind: str = kind, store: np.ndarray = store, u: np.ndarray = u) -> None:
                got = store[slots]
                if kind == "float32":
                    store[slots] = got
                elif kind == "float16":
                    x = got.astype(np.float32)
                    store[slots] = x.astype(np.float16)
                else:
                    x = got.astype(np.float32) * u[slots]
                    new = _pow2_unit(x).reshape(u[slots].shape)
                    store[slots] = np.rint(x / new).astype(np.int16)
                    u[slots] = new

            times = []
            for _ in range(rounds):
                t = time.perf_counter()
                for _ in range(20):
                    step()
                times.append((time.perf_counter() - t) / 20)
            out[f"{what}: {kind}"] = float(np.median(times)) * 1e6 / batch
    out["h, c: float16, cast by onnxruntime"] = _ort_cast(batch, rounds)
    return out


def _ort_cast(batch: int, rounds: int, streams: int = 100_000) -> float:
    """µs per event of the gather and scatter of h and c (2 arrays of 2 layers of 64) kept
    in float16 and cast to float32 and back by ONNX Cast nodes, as a step model taking and
    returning float16 state would do inside its graph."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    n = 2 * 64 * 2
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["x"], ["wide"], to=TensorProto.FLOAT),
            helper.make_node("Cast", ["wide"], ["y"], to=TensorProto.FLOAT16),
        ],
        "cast",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [batch, n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [batch, n])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep both casts
    session = ort.InferenceSession(
        model.SerializeToString(), opts, providers=["CPUExecutionProvider"]
    )
    rng = np.random.default_rng(0)
    store = rng.normal(size=(streams, n)).astype(np.float16)
    slots = np.sort(rng.choice(streams, batch, replace=False))
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(20):
            store[slots] = session.run(None, {"x": store[slots]})[0]
        times.append((time.perf_counter() - t) / 20)
    return float(np.median(times)) * 1e6 / batch


# the state as exported: no casts, a float32 store
_FLOAT32_STATE = """
import numpy as np
import pipeline.engine.inference as inference
import pipeline.engine.state as state
state.STATE_DTYPE = inference.STATE_DTYPE = np.float32
inference._half_state = lambda model: model.SerializeToString()
"""


def step_ab(registry: Path, model: str, rounds: int) -> dict[str, list[float]]:
    """The model-only step (``statecast bench``'s, batch 2,000 of 8,000 streams) with the
    state in float16 as the scorer keeps it, and in float32 as exported (no casts), in
    processes of their own (``step_cost``'s rounds: 1 s warm-up, 4 s timed), alternating
    which goes first: µs per event per run. One tree, so nothing but the state's type
    differs."""
    from benchmarks.step_cost import _process_round

    version = Registry(registry).meta(model).version
    preludes = {"float16": "", "float32": _FLOAT32_STATE}
    out: dict[str, list[float]] = {"float16": [], "float32": []}
    for k in range(rounds):
        for kind in ("float16", "float32") if k % 2 == 0 else ("float32", "float16"):
            out[kind].append(
                _process_round(
                    str(REPO),
                    registry,
                    model,
                    version,
                    2000,
                    8000,
                    prelude=preludes[kind],
                    warmup=1.0,
                    seconds=4.0,
                )
            )
    return out


def add_series_arguments(ap: argparse.ArgumentParser) -> None:
    """The model and the sets of series a replay benchmark runs (profile_worth.py takes
    them from here too), and where its JSON report goes."""
    ap.add_argument("--registry", type=Path, default=REPO / "exported_models")
    ap.add_argument("--model", default="default")
    ap.add_argument("--data", type=Path, help="a folder of NAB-layout CSV files")
    ap.add_argument("--corpus", type=int, help="generated series (training.corpus) of this seed")
    ap.add_argument("--json", type=Path)


def series_sets(a: argparse.Namespace) -> tuple[Any, dict[str, list[Any]]]:
    """The model's metadata, and each set of series the arguments name, by its label."""
    meta = Registry(a.registry).meta(a.model)
    sets: dict[str, list[Any]] = {}
    if a.data:
        sets[str(a.data)] = collect_streams([a.data])
    if a.corpus is not None:
        from training import corpus

        sets[f"corpus seed {a.corpus}"] = corpus.held_out(a.corpus)
    return meta, sets


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_series_arguments(ap)
    ap.add_argument(
        "--step-rounds",
        type=int,
        default=0,
        help="also time the whole model-only step with the state in float16 and in float32, "
        "this many rounds of each (alternating; about 12 s a round)",
    )
    a = ap.parse_args()
    meta, sets = series_sets(a)
    report: dict[str, Any] = {"model": f"{a.model}/{meta.version}", "effect": {}}
    for label, streams in sets.items():
        print(f"{label} ({len(streams)} series), each variant against the store as it is:")
        report["effect"][label] = res = effect(meta, streams)
        for name, r in res.items():
            print(
                f"  {name:<50} forecast deviation max {r['max_forecast_deviation_std']:.2e} "
                f"median {r['median_forecast_deviation_std']:.2e} std; MAE x"
                f"{r['mae_ratio_geomean']:.4f}; flags flipped {r['flag_flips']} of {r['records']:,}"
            )
    report["cost_us_per_event"] = c = cost()
    print("gather + scatter, batch 2,000 of 100k streams (µs per event):")
    for name, us in c.items():
        print(f"  {name:<32} {us:6.3f}")
    if a.step_rounds:
        report["step_us_per_event"] = ab = step_ab(a.registry, a.model, a.step_rounds)
        print("model-only step, batch 2,000 (µs per event, each run; median):")
        for kind, runs in ab.items():
            each = " ".join(f"{v:.2f}" for v in runs)
            print(f"  state in {kind:<8} {each}   median {float(np.median(runs)):.2f}")
    if a.json:
        a.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
