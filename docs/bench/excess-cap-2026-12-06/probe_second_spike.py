"""excess_cap 10 against 30 (session 39): forecast-channel alarms on a habitually spiky
stream's spikes after its fifth, and whether a second spike of 6/8/12 spreads a few hours
after a first is found on a quiet stream.

    .venv/bin/python docs/bench/excess-cap-2026-12-06/probe_second_spike.py
"""
import sys, dataclasses
from pathlib import Path
import numpy as np
REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))
from pipeline.engine.registry import Registry
from pipeline.engine.stepper import REASONS
from pipeline.engine.csvdata import Series
from training.evaluate import replay
from training.shapes import clean_feeds
meta = Registry(REPO / 'exported_models').meta('default')
for seed in (1, 2, 3):
    (feed,) = clean_feeds(seed, shapes=("habitual_spikes",))
    s = feed.series(); v = s.values.copy(); late = len(v) - 100; v[late] = 200.0
    spiky = Series("spiky", s.ts, v, s.features)
    spikes = np.flatnonzero(v[:, 0] > 10)
    for cap in (10, 30):
        anom = dataclasses.replace(meta.anomaly, excess_cap=cap)
        (r,) = replay(meta, [spiky], anomaly=anom)
        flag = np.nan_to_num(r.score) >= anom.threshold
        byf = flag & (r.reason == REASONS.index("forecast"))
        al = [i for i in spikes[5:] if byf[i] and i != late]
        print('habit seed', seed, 'cap', cap, 'forecast alarms on spikes after the 5th', len(al), 'of', len(spikes) - 5, 'late found', bool(flag[late]))
# two incidents: quiet stream, spikes of k sigma
rng = np.random.default_rng(0)
n = 288 * 6
ts = 1_764_028_800.0 + 300.0 * np.arange(n)
for k in (6, 8, 12):
    res = {}
    for cap in (10, 30):
        found = 0; tot = 0
        for seed in range(10):
            rng = np.random.default_rng(seed)
            v = 50 + rng.normal(0, 1, n)
            at = [288 * 3 + int(rng.integers(0, 200)), 0]
            at[1] = at[0] + int(rng.integers(12, 288))
            sign = rng.choice([-1, 1])
            for a in at: v[a] += sign * k
            (r,) = replay(meta, [Series("q", ts, v[:, None], ("value",))], anomaly=dataclasses.replace(meta.anomaly, excess_cap=cap))
            flag = np.nan_to_num(r.score) >= meta.anomaly.threshold
            found += int(flag[at[1]]); tot += 1
            fa = int(flag.sum() - flag[at[0]] - flag[at[1]])
        res[cap] = (found, tot)
    print('second spike of', k, 'sigma found', res)
