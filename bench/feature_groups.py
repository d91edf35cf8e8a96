"""The gain of each feature group: the features `trainer train --export-features DIR` wrote,
written again without one group at a time into DIR-without-<group>/, for
crates/airq-model/examples/fit_features.rs to refit (bench/train_beijing.sh runs both).

usage: python bench/feature_groups.py DIR
prints the directories written, one per line.
"""
import os
import sys

import pandas as pd

folder = sys.argv[1]
GROUPS = {
    "neighbours": lambda c: c.startswith("nb_") or c == "net_change1",
    "pm10_no2": lambda c: c.startswith("pm10_") or c.startswith("no2_"),
    "pm2_5_lags_1_5": lambda c: c.startswith("pm2_5_lag") and c != "pm2_5_lag0",
    "rolling_mean": lambda c: c == "pm2_5_mean24h",
    "calendar": lambda c: c in ("hour_sin", "hour_cos", "doy_sin", "doy_cos", "weekend"),
}
parts = {p: pd.read_csv(f"{folder}/{p}.csv") for p in ("train", "test")}
for group, member in GROUPS.items():
    drop = [c for c in parts["train"].columns if member(c)]
    if not drop:
        continue
    out = f"{folder}-without-{group}"
    os.makedirs(out, exist_ok=True)
    for p, frame in parts.items():
        frame.drop(columns=drop).to_csv(f"{out}/{p}.csv", index=False)
    print(out, flush=True)
