"""Statistics per config over its runs, robust / fragile flags, ranking; the block Dataset.

See ``study.results`` for the rules.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from flyvis_study.evaluation.names import HEADLINE_METRICS
from flyvis_study.failures import Status
from flyvis_study.study.record import RUN_DIMS, SCHEMA_VERSION
from flyvis_study.study.results import combine_runs, runs_table, with_ground_truth_axis

STATISTICS = ("n", "mean", "std", "cv", "min")


ROBUST_RULES = {"connectivity_R2": (0.05, 0.90), "tau_R2": (0.05, 0.90), "V_rest_R2": (0.20, 0.40),
                "cluster_accuracy": (0.10, 0.80)}  # metric: (CV below, min above)
FRAGILE_CV = 0.25  # fragile: a headline metric's CV above this ...
FRAGILE_MIN_FRACTION = 0.5  # ... or a run below this fraction of its mean (or a failed run)
RANK_MIN_RUNS = 3  # configs with at least this many runs are ranked
RANK_V_REST_WEIGHT = 0.5  # score = mean(conn)(1 - CV(conn)) + weight * mean(V_rest)(1 - CV(V_rest))


def metric_statistics(ds: xr.Dataset, metrics=(*HEADLINE_METRICS, "training_time_min")) -> xr.Dataset:
    """n, mean, std (ddof 1), CV = std / mean and min of each metric per config: xarray reductions
    over a config's runs (the seed dims ground_truth x sim_seed x train_seed), skipping NaN (a run
    not made, or a metric a run could not measure). std and CV need 2 values, CV a non-zero mean.

    Shapes: each metric (config, ground_truth, sim_seed, train_seed) -> (config, statistic).
    """
    ds = with_ground_truth_axis(ds)
    runs = ds[list(metrics)].where(ds["run_id"] != "")
    seeds = [d for d in RUN_DIMS if d != "config"]
    n = runs.count(seeds)
    mean = runs.mean(seeds)
    std = runs.var(seeds, ddof=0).where(n > 1) * (n / (n - 1)).where(n > 1)  # ddof 1 without the n = 1 warning
    std = np.sqrt(std)
    cv = (std / mean).where((n > 1) & (mean != 0))
    return xr.concat([n.astype(float), mean, std, cv, runs.min(seeds)],
                     pd.Index(list(STATISTICS), name="statistic"))


def config_statistics(ds: xr.Dataset) -> pd.DataFrame:
    """Per config: n_runs, status counts, and n/mean/std/CV/min of each metric
    (``metric_statistics``); robust, fragile, score."""
    df = runs_table(ds)
    stats = metric_statistics(ds)
    rows = []
    for config, grp in df.groupby("config", sort=False):
        row = {"config": config, "n_runs": len(grp),
               **{status.value: int((grp["status"] == status).sum()) for status in Status}}
        for m in stats.data_vars:
            values = stats[m].sel(config=config)
            row.update({f"{m}_{s}": float(values.sel(statistic=s)) for s in STATISTICS})
            row[f"{m}_n"] = int(row[f"{m}_n"])
        row["robust"] = bool(all(
            row[f"{m}_cv"] < cv and row[f"{m}_min"] > lo for m, (cv, lo) in ROBUST_RULES.items()))
        row["fragile"] = bool(any(
            (row[f"{m}_cv"] > FRAGILE_CV) or (row[f"{m}_min"] < FRAGILE_MIN_FRACTION * row[f"{m}_mean"])
            for m in HEADLINE_METRICS
            if np.isfinite(row[f"{m}_mean"])) or row["failed"] > 0)
        c_m, c_cv = row["connectivity_R2_mean"], row["connectivity_R2_cv"]
        v_m, v_cv = row["V_rest_R2_mean"], row["V_rest_R2_cv"]
        row["score"] = ((c_m * (1 - c_cv) + RANK_V_REST_WEIGHT * v_m * (1 - v_cv)) if row["n_runs"] >= RANK_MIN_RUNS
                        else math.nan)
        rows.append(row)
    return pd.DataFrame(rows).set_index("config")


def ranking(stats: pd.DataFrame) -> pd.DataFrame:
    """Configs with >= ``RANK_MIN_RUNS`` runs by score (desc), ties by lower CV(V_rest)."""
    ranked = stats[stats["n_runs"] >= RANK_MIN_RUNS].copy()
    ranked = ranked.sort_values(["score", "V_rest_R2_cv"], ascending=[False, True])
    ranked["rank"] = np.arange(1, len(ranked) + 1)
    return ranked[["rank", "score", "n_runs", "connectivity_R2_mean", "connectivity_R2_cv", "V_rest_R2_mean",
                   "V_rest_R2_cv", "robust", "fragile"]]


def variance_table(stats: pd.DataFrame) -> pd.DataFrame:
    """Rows (config, metric), columns n / mean / std / CV / min: the block's statistics, whole."""
    rows = {(cfg, m): {s: stats.loc[cfg, f"{m}_{s}"] for s in STATISTICS}
            for cfg in stats.index for m in HEADLINE_METRICS}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index = pd.MultiIndex.from_tuples(table.index, names=["config", "metric"])
    table["n"] = table["n"].astype(int)
    return table


def flag_reasons(row: pd.Series) -> str:
    """Why a config is or is not robust, and whether it is fragile, in one line (the rules' numbers)."""
    if row["n_runs"] < 2:
        return "robust / fragile need >= 2 runs"
    missed = []
    for m, (cv, lo) in ROBUST_RULES.items():
        if not row[f"{m}_cv"] < cv:
            missed.append(f"{m} CV {100 * row[f'{m}_cv']:.1f} % (needs < {100 * cv:.0f} %)")
        if not row[f"{m}_min"] > lo:
            missed.append(f"{m} min {row[f'{m}_min']:.3f} (needs > {lo:.2f})")
    text = "robust (every rule met)" if not missed else "not robust: " + ", ".join(missed)
    fragile = [f"{m} CV {100 * row[f'{m}_cv']:.1f} % > {100 * FRAGILE_CV:.0f} %" for m in HEADLINE_METRICS
               if np.isfinite(row[f"{m}_mean"]) and row[f"{m}_cv"] > FRAGILE_CV]
    fragile += [f"{m} min {row[f'{m}_min']:.3f} below {FRAGILE_MIN_FRACTION:g} x its mean" for m in HEADLINE_METRICS
                if np.isfinite(row[f"{m}_mean"]) and row[f"{m}_min"] < FRAGILE_MIN_FRACTION * row[f"{m}_mean"]]
    if row["failed"]:
        fragile.append(f"{int(row['failed'])} failed run(s)")
    return text + ("; fragile: " + ", ".join(fragile) if fragile else "; not fragile")


def statistics_dataset(stats: pd.DataFrame) -> xr.Dataset:
    """Statistics as variables over (config, metric, statistic) for the block netCDF."""
    metrics = [*HEADLINE_METRICS, "training_time_min"]
    arr = np.array([[[stats.loc[c, f"{m}_{s}"] for s in STATISTICS] for m in metrics] for c in stats.index],
                   dtype=float)
    return xr.Dataset(
        {"summary": (("config", "metric", "statistic"), arr),
         "robust": ("config", stats["robust"].astype(int).to_numpy()),
         "fragile": ("config", stats["fragile"].astype(int).to_numpy()),
         "score": ("config", stats["score"].to_numpy(dtype=float)),
         "n_converged": ("config", stats["converged"].to_numpy()),
         "n_partial": ("config", stats["partial"].to_numpy()),
         "n_failed": ("config", stats["failed"].to_numpy())},
        coords={"config": list(stats.index), "metric": metrics, "statistic": list(STATISTICS)})


def block_dataset(paths: list[str | Path], block: int, attrs: dict | None = None,
                  specs: list | None = None) -> xr.Dataset:
    """Combined runs (each under its spec's label and factors, ``combine_runs``) + statistics,
    ready for ``write_netcdf_atomic``."""
    runs = combine_runs(paths, specs)
    stats = config_statistics(runs)
    ds = xr.merge([runs, statistics_dataset(stats)], join="outer")
    ds.attrs = {"file_kind": "block", "schema_version": SCHEMA_VERSION, "block": block,
                **{k: v for k, v in (attrs or {}).items() if isinstance(v, (str, int, float))}}
    return ds
