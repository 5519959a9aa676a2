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

STRING_VARS = ("status", "reason", "seed_mode", "run_id", "config_json", "overrides_json", "conn_trend", "vrest_trend",
               "tau_trend", "conn_peak_phase", "vrest_peak_phase", "tau_peak_phase")


def combine_runs(paths: list[str | Path]) -> xr.Dataset:
    """Combine one-run files into a block Dataset (outer join over config x sim_seed x train_seed x step)."""
    parts = [xr.load_dataset(p, engine="h5netcdf") for p in paths]
    if not parts:
        raise ValueError("no run files to combine")
    combined = xr.combine_by_coords(parts, join="outer", combine_attrs="drop_conflicts",
                                    data_vars="all", coords="different", compat="no_conflicts")
    for name in STRING_VARS:
        if name in combined:
            combined[name] = combined[name].fillna("").astype(str)
    if "replicate" in combined:
        combined["replicate"] = combined["replicate"].fillna(-1).astype(np.int64)
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
