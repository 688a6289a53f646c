"""Data preparation: causal normalisation, time-ordered split, no look-ahead."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.engine.normalise import NormaliserParams, normalise_series
from pipeline.errors import DataError
from training.data import Series, load_paths, parse_duration, prepare


def _series(n: int = 300, name: str = "s") -> Series:
    rng = np.random.default_rng(0)
    return Series(name, np.arange(n, dtype=float), rng.normal(10, 2, (n, 1)), ("value",))


def test_normalisation_is_causal() -> None:
    values = np.random.default_rng(1).normal(5, 1, (200, 1))
    z1, m1, _s1 = normalise_series(NormaliserParams(), values)
    changed = values.copy()
    changed[150:] += 100.0  # the future changes ...
    z2, m2, _s2 = normalise_series(NormaliserParams(), changed)
    # ... the past does not.
    np.testing.assert_array_equal(z1[:150], z2[:150])
    np.testing.assert_array_equal(m1[:150], m2[:150])


def test_training_targets_never_reach_into_validation() -> None:
    s = _series(400)
    p = prepare([s], NormaliserParams(), horizon=5, val_fraction=0.25, segment=64, burn_in=4)
    split = p.val[0][4]
    assert split == 300
    # Reconstruct each segment's absolute positions: segments start at 0, 64, 128, ...
    for i in range(p.seg_x.shape[0]):
        start = i * 64
        for k in range(5):
            live = np.nonzero(p.seg_mask[i, :, k])[0] + start
            assert (live + k + 1 < split).all()
    # Validation inputs equal training-time normalisation (one causal pass per stream).
    np.testing.assert_array_equal(p.val[0][1][:64], p.seg_x[0])


def test_csv_loading_nab_and_multivariate(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(
        "timestamp,value\n2026-01-01 00:00:00,1.5\n2026-01-01 00:05:00,2\n"
    )
    (tmp_path / "m.csv").write_text("timestamp,stream_id,temp,vib\n1,p1,1,2\n2,p2,3,4\n3,p1,5,6\n")
    streams = {s.name: s for s in load_paths([tmp_path])}
    assert streams["a"].values[:, 0].tolist() == [1.5, 2.0]
    assert streams["a"].ts[1] - streams["a"].ts[0] == 300
    assert streams["p1"].features == ("temp", "vib")
    assert streams["p1"].values.tolist() == [[1, 2], [5, 6]]


def test_bad_inputs_raise_data_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("timestamp,value\nnot-a-time,1\n")
    with pytest.raises(DataError, match=r"bad\.csv:2"):
        load_paths([tmp_path])
    with pytest.raises(DataError, match="does not exist"):
        load_paths([tmp_path / "nope"])
    with pytest.raises(DataError, match="at least"):
        prepare([_series(10)], NormaliserParams(), 3, 0.2, 64, 4)
    assert parse_duration("7d") == 7 * 86400 and parse_duration("90s") == 90
    with pytest.raises(DataError):
        parse_duration("soon")
