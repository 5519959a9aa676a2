"""Block results: combined xarray Dataset, statistics per config, ranking, paired comparison.

Statistics per config over its runs (failed runs with NaN metrics are excluded from the
moments but counted): n, mean, std (ddof=1), CV = std / mean, min.
- robust: conn and tau CV < 5 % and min > 0.90; V_rest CV < 20 % and min > 0.40;
  cluster_accuracy CV < 10 % and min > 0.80;
- fragile: any headline metric with CV > 25 % or min < 0.5 x its mean;
- ranking (configs with >= 3 runs): score = mean(conn)(1 - CV(conn)) + 0.5 mean(V_rest)(1 - CV(V_rest)),
  ties broken by the lower CV(V_rest).
Runs sit on (config, ground_truth, sim_seed, train_seed): ``ground_truth`` names the simulated
network (``synthetic/seed0``, a flyvis model id such as ``flow/0000/000``), a seed-like axis a
block varies with ``ground_truth_models``. Files written before that axis existed get it on
reading, from each run's stored config (``with_ground_truth_axis``).
Paired comparison of two blocks (e.g. two-stage vs standard) on shared (ground_truth, sim_seed,
train_seed) cells: per-pair differences, their mean with a bootstrap 95 % CI, Wilcoxon signed-rank and
paired t tests, and the effect size d_z = mean(diff) / sd(diff).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from xarray.indexes import PandasMultiIndex

from flyvis_study.atomic import atomic_path
from flyvis_study.config import GroundTruthConfig, RunConfig
from flyvis_study.study.record import NETCDF_ENGINE, RUN_DIMS, cell_coords


def _stored_ground_truth(ds: xr.Dataset) -> str:
    """The ground-truth label of the (first) run stored in a file without the axis (the default
    ground truth's when no config is stored)."""
    if "config_json" in ds:
        for text in np.asarray(ds["config_json"].values, dtype=object).ravel():
            if text:
                try:
                    return RunConfig.model_validate_json(str(text)).simulation.ground_truth.label()
                except ValueError:
                    break
    return GroundTruthConfig().label()


def with_ground_truth_axis(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with its run variables on ``RUN_DIMS``: a file from before the ground_truth axis
    gets it (one value, from its stored config); other variables are left as they are."""
    if "ground_truth" in ds.dims:
        return ds
    run_vars = [v for v in ds.data_vars if {"config", "sim_seed", "train_seed"} <= set(ds[v].dims)]
    label = _stored_ground_truth(ds)
    expanded = ds[run_vars].expand_dims(ground_truth=[label], axis=1)
    rest = ds.drop_vars(run_vars)
    out = xr.merge([expanded, rest], join="outer", combine_attrs="override")
    out.attrs = ds.attrs
    return out


def combine_runs(paths: list[str | Path], specs: list | None = None) -> xr.Dataset:
    """Combine one-run files into a block Dataset.

    ``specs`` (the block's ``RunSpec`` of each path, in order): each run takes the block's own
    label and factor coordinates (``record.cell_coords``), since a content-keyed run may have
    been made by another block under another label; several cells may share one run file.
    Without specs, each run keeps the label and factors stored in its file (``arm`` = the
    label in files from before factor coordinates).

    Scalars (metrics, status, seeds, config) go on ``RUN_DIMS`` (config, ground_truth, sim_seed,
    train_seed), outer-joined: a cell without a run is NaN / "". Trajectories (``traj_*``) go on
    ``RUN_DIMS`` + (step) over the union of the runs' iteration grids: each run keeps its own
    steps, NaN elsewhere, so runs of different lengths (epochs, augmentation loops, a run that
    diverged mid-way, one that never trained) assemble into one block.
    """
    if not paths:
        raise ValueError("no run files to combine")
    scalars, trajectories = [], []
    for k, p in enumerate(paths):
        part = with_ground_truth_axis(xr.load_dataset(p, engine=NETCDF_ENGINE))
        if specs is not None:
            part = part.drop_vars([c for c in part.coords if part[c].dims == ("config",)])
            part = part.assign_coords(config=[specs[k].label], **cell_coords(specs[k]))
        elif "arm" not in part.coords:
            part = part.assign_coords(arm=("config", [str(c) for c in part["config"].values]))
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
        combined = combined.transpose(*RUN_DIMS, "step")
    for var in combined.variables.values():  # the first file's encoding (e.g. a <U35 string dtype)
        var.encoding = {}  # would cut the longer labels and reasons of the others when written
    return combined


def runs_table(ds: xr.Dataset) -> pd.DataFrame:
    """One row per finished run (config, ground_truth, sim_seed, train_seed) with its scalar metrics."""
    ds = with_ground_truth_axis(ds)
    cols = [v for v in ds.data_vars if set(ds[v].dims) == set(RUN_DIMS)]
    df = ds[cols].to_dataframe().reset_index()
    return df[df["run_id"] != ""].reset_index(drop=True)


def factors_of(ds: xr.Dataset) -> list[str]:
    """The factor coordinates of a block or run Dataset: ``arm`` and its axes, along ``config``."""
    return [name for name in ds.coords if name != "config" and ds[name].dims == ("config",)]


def factorial(ds: xr.Dataset) -> xr.Dataset:
    """The block's runs with one dimension per factor instead of ``config``: dims (arm, *axes,
    ground_truth, sim_seed, train_seed[, step]), the cell's label kept as the variable
    ``label``; a cell the block did not run (an incomplete factorial) is NaN / "". Select by
    factor: ``factorial(ds).sel(arm="two_stage", blank_fraction=0.5)``.
    """
    runs = [v for v in ds.data_vars if "config" in ds[v].dims and not {"metric", "statistic"} & set(ds[v].dims)]
    factors = factors_of(ds)
    out = ds[runs].assign(label=("config", [str(c) for c in ds["config"].values]))
    return out.drop_indexes("config").drop_vars("config").set_xindex(factors, PandasMultiIndex).unstack("config")


def save_block(ds: xr.Dataset, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine=NETCDF_ENGINE)
