"""Block results: combined xarray Dataset, statistics per config, ranking, paired comparison.

Statistics per config over its runs (failed runs with NaN metrics are excluded from the
moments but counted): n, mean, std (ddof=1), CV = std / mean, min.
- robust: conn and tau CV < 5 % and min > 0.90; V_rest CV < 20 % and min > 0.40;
  cluster_accuracy CV < 10 % and min > 0.80;
- fragile: any headline metric with CV > 25 % or min < 0.5 x its mean;
- ranking (configs with >= 3 runs): score = mean(conn)(1 - CV(conn)) + 0.5 mean(V_rest)(1 - CV(V_rest)),
  ties broken by the lower CV(V_rest).
Paired comparison of two blocks (e.g. two-stage vs standard) on shared (sim_seed, train_seed)
pairs: per-pair differences, their mean with a bootstrap 95 % CI, Wilcoxon signed-rank and
paired t tests, and the effect size d_z = mean(diff) / sd(diff).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from flyvis_study.atomic import atomic_path


def combine_runs(paths: list[str | Path]) -> xr.Dataset:
    """Combine one-run files into a block Dataset.

    Scalars (metrics, status, seeds, config) go on (config, sim_seed, train_seed), outer-joined:
    a cell without a run is NaN / "". Trajectories (``traj_*``) go on (config, sim_seed,
    train_seed, step) over the union of the runs' iteration grids: each run keeps its own
    steps, NaN elsewhere, so runs of different lengths (epochs, augmentation loops, a run that
    diverged mid-way, one that never trained) assemble into one block.
    """
    if not paths:
        raise ValueError("no run files to combine")
    scalars, trajectories = [], []
    for p in paths:
        part = xr.load_dataset(p, engine="h5netcdf")
        traj = [v for v in part.data_vars if "step" in part[v].dims]
        scalars.append(part.drop_vars(traj + (["step"] if "step" in part.coords else [])))
        if traj:
            trajectories.append(part[traj])
    combined = xr.merge(scalars + trajectories, join="outer", compat="no_conflicts",
                        combine_attrs="drop_conflicts")
    for name, var in combined.data_vars.items():
        if var.dtype == object or var.dtype.kind == "U":  # text: a cell without a run reads ""
            combined[name] = var.fillna("").astype(str)
    if "replicate" in combined:
        combined["replicate"] = combined["replicate"].fillna(-1).astype(np.int64)
    if "step" in combined.dims:
        combined = combined.transpose("config", "sim_seed", "train_seed", "step")
    return combined


def runs_table(ds: xr.Dataset) -> pd.DataFrame:
    """One row per finished run (config, sim_seed, train_seed) with its scalar metrics."""
    cols = [v for v in ds.data_vars if set(ds[v].dims) == {"config", "sim_seed", "train_seed"}]
    df = ds[cols].to_dataframe().reset_index()
    return df[df["run_id"] != ""].reset_index(drop=True)


def save_block(ds: xr.Dataset, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf")


def load_block(path: str | Path) -> xr.Dataset:
    return xr.load_dataset(path, engine="h5netcdf")
