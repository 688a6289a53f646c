"""Sensor time series from CSV files: NAB layout (``timestamp,value``) or multivariate
(named value columns, optional ``stream_id`` column). Used by the trainer, ``replay``
and ``detect``. Rows stay in file order (NAB files have DST duplicates; never sort).
"""

from __future__ import annotations

import csv
import dataclasses
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from pipeline.engine.events import parse_ts
from pipeline.errors import DataError, EventRejected

__all__ = ["Series", "load_csv", "load_paths"]

F64 = npt.NDArray[np.float64]


@dataclasses.dataclass(frozen=True)
class Series:
    """One stream: ``ts [T]`` epoch seconds, ``values [T, F]`` in sensor units."""

    name: str
    ts: F64
    values: F64
    features: tuple[str, ...]
    ts_text: tuple[str, ...] = ()


def _csv_ts(text: str) -> float:
    """CSV timestamps are epoch seconds or ISO-8601 text."""
    try:
        return float(text)
    except ValueError:
        return parse_ts(text.strip())


def _csv_streams(path: Path, name: str | None = None) -> list[Series]:
    try:
        with path.open(newline="") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    if len(rows) < 2:
        raise DataError(f"{path} has no data rows")
    header = [h.strip() for h in rows[0]]
    if "timestamp" not in header:
        raise DataError(f"{path}: the header needs a 'timestamp' column, got {header}")
    ts_col = header.index("timestamp")
    sid_col = header.index("stream_id") if "stream_id" in header else None
    feat_cols = [i for i, h in enumerate(header) if i not in (ts_col, sid_col)]
    features = tuple(header[i] for i in feat_cols)
    if not features:
        raise DataError(f"{path}: no value columns besides timestamp")
    groups: dict[str, tuple[list[float], list[list[float]], list[str]]] = defaultdict(
        lambda: ([], [], [])
    )
    for line_no, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        try:
            ts = _csv_ts(row[ts_col])
            vals = [float(row[i]) for i in feat_cols]
        except (EventRejected, ValueError, IndexError) as exc:
            raise DataError(f"{path}:{line_no}: {exc}") from exc
        sid = row[sid_col] if sid_col is not None else (name or path.stem)
        groups[sid][0].append(ts)
        groups[sid][1].append(vals)
        groups[sid][2].append(row[ts_col])
    return [
        Series(sid, np.asarray(t), np.asarray(v, np.float64), features, tuple(txt))
        for sid, (t, v, txt) in groups.items()
    ]


def load_csv(path: Path, name: str | None = None) -> list[Series]:
    """Streams of one CSV file (stream id = ``name`` or the file stem, or a ``stream_id`` column)."""
    return _csv_streams(path, name)


def load_paths(paths: Iterable[Path]) -> list[Series]:
    """Every ``*.csv`` under the given files or folders, sorted by path."""
    out: list[Series] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            files = sorted(path.rglob("*.csv"))
        elif path.exists():
            files = [path]
        else:
            raise DataError(f"training data path {path} does not exist")
        for f in files:
            out.extend(load_csv(f))
    if not out:
        raise DataError(f"no CSV files under {[str(p) for p in paths]}")
    return out
