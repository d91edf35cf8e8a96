"""Issue 14's neighbour features, measured before they are built into the trainer: the
features `trainer train --export-features DIR` wrote, plus what the other stations saw at the
same hour, written to OUT for crates/airq-model/examples/fit_features.rs and
bench/forecast_refs.py to fit on (the same split, the same models: the gain is the features').

For a row forecasting sensor s at target hour T (its inputs end at T - 1), over the other
stations with a row for T (their inputs end at T - 1 too: nothing from the future), weighted by
inverse squared distance (stations.csv):
  nb_pm2_5_lag0, nb_pm2_5_lag1, nb_pm2_5_lag2: their PM2.5 at T-1, T-2, T-3
  nb_change1: nb_pm2_5_lag0 - nb_pm2_5_lag1 (is the region rising?)
  nb_dev: nb_pm2_5_lag0 - s's own PM2.5 at T-1 (is s above or below its neighbours?)
  nb_pm10_lag0, nb_no2_lag0: their PM10, NO2 at T-1
  net_change1: the unweighted mean of every station's last change (the whole network)
A station alone at its hour gets its own values (deviation 0).

usage: python bench/neighbour_features.py DIR STATIONS_CSV OUT
"""
import os
import sys

import numpy as np
import pandas as pd

folder, stations_csv, out = sys.argv[1], sys.argv[2], sys.argv[3]
stations = pd.read_csv(stations_csv).set_index("sensor_id")
train = pd.read_csv(f"{folder}/train.csv")
test = pd.read_csv(f"{folder}/test.csv")
rows = pd.concat([train.assign(_part="train"), test.assign(_part="test")], ignore_index=True)

sensors = sorted(rows["sensor"].unique())
lat = np.radians(stations.loc[sensors, "lat"].to_numpy())
lon = np.radians(stations.loc[sensors, "lon"].to_numpy())
# Equirectangular distances (km): the stations are within 60 km of each other.
dx = (lon[:, None] - lon[None, :]) * np.cos((lat[:, None] + lat[None, :]) / 2)
dy = lat[:, None] - lat[None, :]
dist = 6371.0 * np.hypot(dx, dy)
weight = np.where(dist > 0, 1.0 / np.maximum(dist, 1.0) ** 2, 0.0)

index = {s: i for i, s in enumerate(sensors)}
rows["_i"] = rows["sensor"].map(index)
hours = sorted(rows["target"].unique())
rows["_h"] = rows["target"].map({h: k for k, h in enumerate(hours)})
cols = ["pm2_5_lag0", "pm2_5_lag1", "pm2_5_lag2", "pm10_lag0", "no2_lag0"]
grid = np.full((len(cols), len(hours), len(sensors)), np.nan)
for c, col in enumerate(cols):
    grid[c, rows["_h"].to_numpy(), rows["_i"].to_numpy()] = rows[col].to_numpy()

present = ~np.isnan(grid[0])  # (hours, sensors)
w = weight[rows["_i"].to_numpy()]  # (rows, sensors): weights of every other station
w = w * present[rows["_h"].to_numpy()]
total = w.sum(axis=1)
own = {col: rows[col].to_numpy() for col in cols}
new = {}
for c, col in enumerate(cols):
    values = np.nan_to_num(grid[c][rows["_h"].to_numpy()])
    mean = (w * values).sum(axis=1) / np.where(total > 0, total, 1.0)
    new["nb_" + col] = np.where(total > 0, mean, own[col])
new["nb_change1"] = new["nb_pm2_5_lag0"] - new["nb_pm2_5_lag1"]
new["nb_dev"] = new["nb_pm2_5_lag0"] - own["pm2_5_lag0"]
change = grid[0] - grid[1]
net = np.nanmean(np.where(present, change, np.nan), axis=1)
new["net_change1"] = net[rows["_h"].to_numpy()]
for k, v in new.items():
    rows[k] = v

features = [c for c in train.columns if c not in ("y", "target", "sensor")] + list(new)
os.makedirs(out, exist_ok=True)
for part in ("train", "test"):
    rows[rows["_part"] == part][features + ["y", "target", "sensor"]].to_csv(f"{out}/{part}.csv", index=False)
print(f"{len(new)} neighbour features added to {len(rows)} rows; alone at their hour: {int((total == 0).sum())}")
