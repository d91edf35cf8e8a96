"""The reference for the trainer's models: scikit-learn's RandomForestRegressor on exactly the
features and split the trainer used (`trainer train --export-features DIR`).

usage: python bench/sklearn_rf.py DIR [N_JOBS]
"""
import sys
import time

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestRegressor

folder = sys.argv[1]
n_jobs = int(sys.argv[2]) if len(sys.argv) > 2 else 2
train = pd.read_csv(f"{folder}/train.csv")
test = pd.read_csv(f"{folder}/test.csv")
features = [c for c in train.columns if c not in ("y", "target", "sensor")]
model = RandomForestRegressor(n_estimators=100, n_jobs=n_jobs, random_state=42)
started = time.perf_counter()
model.fit(train[features].to_numpy(), train["y"].to_numpy())
seconds = time.perf_counter() - started
pred = model.predict(test[features].to_numpy())
err = test["y"].to_numpy() - pred
rmse = float(np.sqrt(np.mean(err**2)))
mae = float(np.mean(np.abs(err)))
print(
    f"sklearn RandomForestRegressor(n_estimators=100, n_jobs={n_jobs}): "
    f"train rows {len(train)}, test rows {len(test)}, RMSE {rmse:.3f}, MAE {mae:.3f}, "
    f"train seconds {seconds:.1f}"
)
