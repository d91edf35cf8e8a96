"""The references for the trainer's models, on exactly the features and split the trainer used
(`trainer train --export-features DIR`): scikit-learn's RandomForestRegressor and LightGBM with
the parameters of issue 14 (what a data scientist would reach for), each fitted on every
training row and scored on the test rows. One line per model: RMSE, MAE, fit seconds.

usage: python bench/forecast_refs.py DIR [N_JOBS]
(scripts/stack.sh bench-python installs the pinned packages of python/requirements-bench.txt.)
"""
import sys
import time

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestRegressor

folder = sys.argv[1]
n_jobs = int(sys.argv[2]) if len(sys.argv) > 2 else 2
train = pd.read_csv(f"{folder}/train.csv")
test = pd.read_csv(f"{folder}/test.csv")
features = [c for c in train.columns if c not in ("y", "target", "sensor")]
x, y = train[features].to_numpy(), train["y"].to_numpy()
tx, ty = test[features].to_numpy(), test["y"].to_numpy()

references = {
    "sklearn RandomForestRegressor(n_estimators=60, min_samples_leaf=5, max_features=0.5, "
    f"max_samples=0.5, n_jobs={n_jobs})": RandomForestRegressor(
        n_estimators=60,
        min_samples_leaf=5,
        max_features=0.5,
        max_samples=0.5,
        n_jobs=n_jobs,
        random_state=42,
    ),
    "LightGBM LGBMRegressor(n_estimators=600, learning_rate=0.03, num_leaves=63, "
    f"min_child_samples=50, subsample=0.8 (every round), colsample_bytree=0.8, n_jobs={n_jobs})": lgb.LGBMRegressor(
        n_estimators=600,
        learning_rate=0.03,
        num_leaves=63,
        min_child_samples=50,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.8,
        n_jobs=n_jobs,
        random_state=42,
        verbose=-1,
    ),
}
for name, model in references.items():
    started = time.perf_counter()
    model.fit(x, y)
    seconds = time.perf_counter() - started
    predicted = model.predict(tx)
    err = ty - predicted
    # As the trainer scores and predict-api serves: a concentration is never below 0.
    floored = ty - np.maximum(predicted, 0.0)
    print(
        f"{name}: train rows {len(train)}, test rows {len(test)}, "
        f"RMSE {float(np.sqrt(np.mean(err**2))):.3f}, MAE {float(np.mean(np.abs(err))):.3f}, "
        f"RMSE floored at 0 {float(np.sqrt(np.mean(floored**2))):.3f}, fit seconds {seconds:.1f}",
        flush=True,
    )
