"""Score records: intervals beside the forecast, explanations on anomalies."""

from __future__ import annotations

import numpy as np
import orjson

from pipeline.kafka_io import Record
from pipeline.kafka_io.outputs import encode_scores


def _encode(features: tuple[str, ...], score: list[float], with_band: bool) -> list[dict]:  # type: ignore[type-arg]
    n, Z, F = len(score), 2, len(features)
    fc = np.arange(n * Z * F, dtype=np.float64).reshape(n, Z, F)
    lo, hi = (fc - 1.0, fc + 1.0) if with_band else (None, None)
    if lo is not None:
        lo[0, 1] = np.nan  # a step without an interval yet
    docs = encode_scores(
        stream_ids=[f"s{i}" for i in range(n)],
        ts_raw=list(range(n)),
        values=np.ones((n, F)),
        forecast=fc,
        score=np.asarray(score),
        warm=np.ones(n, np.bool_),
        threshold=0.6,
        features=features,
        model="m",
        version="v",
        records=[Record("t", 0, i, None, b"", 0, []) for i in range(n)],
        lo=lo,
        hi=hi,
        reasons=["forecast", "stuck"][:n],
        expected_lo=np.full((n, F), 0.5),
        expected_hi=np.full((n, F), np.nan),
        shares=np.tile(np.linspace(1.0, 2.0, F) / np.linspace(1.0, 2.0, F).sum(), (n, 1)),
    )
    return [orjson.loads(d) for d in docs]


def test_intervals_have_the_forecasts_shape_and_only_anomalies_carry_an_explanation() -> None:
    quiet, flagged = _encode(("value",), [0.1, 0.9], with_band=True)
    assert quiet["forecast"] == [0.0, 1.0]
    assert quiet["forecast_lo"] == [-1.0, None]  # NaN -> null
    assert quiet["forecast_hi"] == [1.0, 2.0]
    assert "anomaly_reason" not in quiet and "expected_lo" not in quiet
    assert flagged["is_anomaly"] and flagged["anomaly_reason"] == "stuck"
    assert flagged["expected_lo"] == 0.5 and flagged["expected_hi"] is None


def test_multivariate_intervals_are_objects_per_step_and_a_point_model_has_none() -> None:
    (doc,) = _encode(("a", "b"), [0.9], with_band=True)
    assert doc["forecast_hi"][1] == {"a": 3.0, "b": 4.0}  # fc step 1 is (2, 3)
    assert doc["expected_lo"] == {"a": 0.5, "b": 0.5}
    (point,) = _encode(("value",), [0.1], with_band=False)
    assert "forecast_lo" not in point and "forecast_hi" not in point


def test_a_multivariate_anomaly_names_each_features_share_and_nothing_else_does() -> None:
    quiet, flagged = _encode(("a", "b"), [0.1, 0.9], with_band=True)
    assert flagged["feature_share"] == {"a": 0.333, "b": 0.667}
    assert "feature_share" not in quiet
    (single,) = _encode(("value",), [0.9], with_band=True)
    assert single["is_anomaly"] and "feature_share" not in single  # trivially all of it
