"""What the input-drift index reads on feeds that did not change and on feeds that did.

    python benchmarks/input_drift.py [--registry exported_models] [--model default]
        [--streams 24] [--seed 0] [--json out.json]

Generated feeds (:func:`training.synthetic.generate`, 5-minute steps, no injected
anomalies) run for six days through the model exactly as the scorer steps them
(:func:`training.evaluate.replay`). From the start of day 3 on, each feed is either left
alone or changed: a level shift of three spreads, three times the noise, a 20-step
sawtooth over the same level, or a frozen sensor. For each whole day of event time from
day 2 on (the scorer compares nothing earlier: :class:`pipeline.engine.drift.DayOfInputs`)
it prints the population stability index of the network's inputs over all streams of a
kind against the model's validation inputs (``validation.input_hist``), as
``statecast_live_input_psi`` would read at the end of that day. The alert threshold is 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.engine import drift  # noqa: E402
from pipeline.engine.csvdata import Series  # noqa: E402
from pipeline.engine.registry import Registry  # noqa: E402
from training.evaluate import replay  # noqa: E402
from training.synthetic import generate  # noqa: E402

DAY_STEPS, DAYS, CHANGE_DAY = 288, 6, 3
CHANGES = ("none", "level_shift", "noisier", "sawtooth", "frozen")


def _changed(values: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    v = values.copy()
    at = CHANGE_DAY * DAY_STEPS
    spread = float(np.std(v[:at]))
    t = np.arange(len(v) - at)
    if kind == "level_shift":
        v[at:] += 3 * spread
    elif kind == "noisier":
        v[at:] += rng.normal(0, 2 * spread, len(t))
    elif kind == "sawtooth":
        v[at:] = float(np.mean(v[:at])) + spread * (3 * (t % 20) / 20 + rng.normal(0, 0.1, len(t)))
    elif kind == "frozen":
        v[at:] = v[at - 1]
    return v


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--registry", type=Path, default=REPO / "exported_models")
    ap.add_argument("--model", default="default")
    ap.add_argument("--streams", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    ns = ap.parse_args()
    meta = Registry(ns.registry).meta(ns.model)
    hist = meta.raw.get("validation", {}).get("input_hist")
    if not hist:
        print(f"{ns.model}/{meta.version} has no validation.input_hist: `statecast models "
              "reference` records it")  # fmt: skip
        return 2
    feeds = generate(
        streams=ns.streams, length=DAYS * DAY_STEPS, seed=ns.seed, anomalies_per_stream=0
    )
    rng = np.random.default_rng(ns.seed)
    out: dict[str, list[float]] = {}
    print(f"{ns.model}/{meta.version}: PSI of each whole day's inputs, {ns.streams} streams; "
          f"changed from the start of day {CHANGE_DAY + 1}")  # fmt: skip
    print(f"{'feed':<12}" + "".join(f"{'day ' + str(d + 1):>9}" for d in range(1, DAYS)))
    for kind in CHANGES:
        series = [
            Series(f.name, f.ts.astype(float), _changed(np.asarray(f.values, float), kind, rng)[:, None], ("value",))
            for f in feeds
        ]  # fmt: skip
        reps = replay(meta, series)
        days = []
        for d in range(1, DAYS):
            z = np.concatenate([r.inputs[d * DAY_STEPS : (d + 1) * DAY_STEPS] for r in reps])
            days.append(round(drift.psi(hist, drift.counts(z)), 3))
        out[kind] = days
        print(f"{kind:<12}" + "".join(f"{p:>9.3f}" for p in days))
    if ns.json:
        doc = {"model": f"{ns.model}/{meta.version}", "streams": ns.streams, "psi_by_day": out}
        ns.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
