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

import math
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .study import HEADLINE_METRICS

STAT_METRICS = ("connectivity_R2", "tau_R2", "V_rest_R2", "cluster_accuracy", "test_R2", "test_pearson")
STATISTICS = ("n", "mean", "std", "cv", "min")
ROBUST_RULES = {"connectivity_R2": (0.05, 0.90), "tau_R2": (0.05, 0.90), "V_rest_R2": (0.20, 0.40),
                "cluster_accuracy": (0.10, 0.80)}
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


def config_statistics(ds: xr.Dataset) -> pd.DataFrame:
    """Per config: n_runs, status counts, and n/mean/std/CV/min of each metric; robust, fragile, score."""
    df = runs_table(ds)
    rows = []
    for config, grp in df.groupby("config", sort=False):
        row = {"config": config, "n_runs": len(grp),
               "converged": int((grp["status"] == "converged").sum()),
               "partial": int((grp["status"] == "partial").sum()),
               "failed": int((grp["status"] == "failed").sum())}
        for m in STAT_METRICS + ("training_time_min",):
            x = grp[m].to_numpy(dtype=float)
            x = x[np.isfinite(x)]
            mean = float(x.mean()) if x.size else math.nan
            std = float(x.std(ddof=1)) if x.size > 1 else math.nan
            row.update({f"{m}_n": int(x.size), f"{m}_mean": mean, f"{m}_std": std,
                        f"{m}_cv": std / mean if x.size > 1 and mean != 0 else math.nan,
                        f"{m}_min": float(x.min()) if x.size else math.nan})
        row["robust"] = bool(all(
            row[f"{m}_cv"] < cv and row[f"{m}_min"] > lo for m, (cv, lo) in ROBUST_RULES.items()))
        row["fragile"] = bool(any(
            (row[f"{m}_cv"] > 0.25) or (row[f"{m}_min"] < 0.5 * row[f"{m}_mean"]) for m in STAT_METRICS
            if np.isfinite(row[f"{m}_mean"])) or row["failed"] > 0)
        c_m, c_cv = row["connectivity_R2_mean"], row["connectivity_R2_cv"]
        v_m, v_cv = row["V_rest_R2_mean"], row["V_rest_R2_cv"]
        row["score"] = (c_m * (1 - c_cv) + 0.5 * v_m * (1 - v_cv)) if row["n_runs"] >= 3 else math.nan
        rows.append(row)
    return pd.DataFrame(rows).set_index("config")


def ranking(stats: pd.DataFrame) -> pd.DataFrame:
    """Configs with >= 3 runs by score (desc), ties by lower CV(V_rest)."""
    ranked = stats[stats["n_runs"] >= 3].copy()
    ranked = ranked.sort_values(["score", "V_rest_R2_cv"], ascending=[False, True])
    ranked["rank"] = np.arange(1, len(ranked) + 1)
    return ranked[["rank", "score", "n_runs", "connectivity_R2_mean", "connectivity_R2_cv", "V_rest_R2_mean",
                   "V_rest_R2_cv", "robust", "fragile"]]


def variance_table(stats: pd.DataFrame) -> pd.DataFrame:
    """mean / std / CV / min per metric and config, with robust / fragile flags (for display)."""
    cols = {}
    for m in STAT_METRICS:
        for s in ("mean", "std", "cv", "min"):
            cols[(m, s)] = stats[f"{m}_{s}"]
    table = pd.DataFrame(cols)
    table[("runs", "n")] = stats["n_runs"]
    table[("flags", "robust")] = stats["robust"]
    table[("flags", "fragile")] = stats["fragile"]
    return table


def statistics_dataset(stats: pd.DataFrame) -> xr.Dataset:
    """Statistics as variables over (config, metric, statistic) for the block netCDF."""
    metrics = list(STAT_METRICS) + ["training_time_min"]
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


def block_dataset(paths: list[str | Path], block: int, attrs: dict | None = None) -> xr.Dataset:
    """Combined runs + statistics, ready for ``to_netcdf(engine='h5netcdf')``."""
    runs = combine_runs(paths)
    stats = config_statistics(runs)
    ds = xr.merge([runs, statistics_dataset(stats)], join="outer")
    ds.attrs = {"block": block, **{k: v for k, v in (attrs or {}).items() if isinstance(v, (str, int, float))}}
    return ds


def save_block(ds: xr.Dataset, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    ds.to_netcdf(tmp, engine="h5netcdf")
    tmp.replace(path)


def load_block(path: str | Path) -> xr.Dataset:
    return xr.load_dataset(path, engine="h5netcdf")


# ----------------------------------------------------------------------------- paired comparison
def paired_comparison(baseline: xr.Dataset, treatment: xr.Dataset, metric: str,
                      baseline_config: str | None = None, treatment_config: str | None = None,
                      n_resamples: int = 9999, seed: int = 0) -> dict:
    """treatment - baseline on shared (sim_seed, train_seed) pairs of one config each."""
    from scipy import stats as st

    def per_pair(ds, config):
        df = runs_table(ds)
        config = config if config is not None else df["config"].iloc[0]
        df = df[df["config"] == config]
        return df.set_index(["sim_seed", "train_seed"])[metric], config

    a, a_cfg = per_pair(baseline, baseline_config)
    b, b_cfg = per_pair(treatment, treatment_config)
    joined = pd.concat({"baseline": a, "treatment": b}, axis=1, join="inner").dropna()
    diff = (joined["treatment"] - joined["baseline"]).to_numpy(dtype=float)
    out = {"metric": metric, "baseline_config": a_cfg, "treatment_config": b_cfg, "n_pairs": int(diff.size),
           "pairs": [list(map(int, k)) for k in joined.index], "baseline": joined["baseline"].tolist(),
           "treatment": joined["treatment"].tolist(), "differences": diff.tolist(),
           "mean_baseline": float(joined["baseline"].mean()) if diff.size else math.nan,
           "mean_treatment": float(joined["treatment"].mean()) if diff.size else math.nan,
           "mean_difference": float(diff.mean()) if diff.size else math.nan,
           "ci95_low": math.nan, "ci95_high": math.nan, "wilcoxon_p": math.nan, "ttest_p": math.nan,
           "effect_size_dz": math.nan, "n_positive": int((diff > 0).sum())}
    if diff.size >= 2:
        sd = float(diff.std(ddof=1))
        out["effect_size_dz"] = out["mean_difference"] / sd if sd > 0 else math.nan
        if sd > 0:
            ci = st.bootstrap((diff,), np.mean, n_resamples=n_resamples, confidence_level=0.95,
                              method="percentile", rng=np.random.default_rng(seed))
            out["ci95_low"], out["ci95_high"] = float(ci.confidence_interval.low), float(ci.confidence_interval.high)
            out["ttest_p"] = float(st.ttest_rel(joined["treatment"], joined["baseline"]).pvalue)
        if np.any(diff != 0):
            out["wilcoxon_p"] = float(st.wilcoxon(diff).pvalue)
    return out


def describe_comparison(c: dict) -> str:
    """One sentence per comparison, with numbers and the caveat of small n."""
    if c["n_pairs"] == 0:
        return f"{c['metric']}: no shared seed pairs."
    return (f"{c['metric']}: {c['treatment_config']} {c['mean_treatment']:.3f} vs {c['baseline_config']} "
            f"{c['mean_baseline']:.3f} on {c['n_pairs']} seed pairs; mean difference {c['mean_difference']:+.3f} "
            f"(95 % bootstrap CI [{c['ci95_low']:+.3f}, {c['ci95_high']:+.3f}]), d_z {c['effect_size_dz']:+.2f}, "
            f"Wilcoxon p = {c['wilcoxon_p']:.3g}, paired t p = {c['ttest_p']:.3g}; "
            f"{c['n_positive']}/{c['n_pairs']} pairs higher under {c['treatment_config']}.")


# ----------------------------------------------------------------------------- human-readable log
def analysis_entries(ds: xr.Dataset, start_iter: int = 1) -> dict[str, list[str]]:
    """Seed-format log entries ('## Iter N: ...') per config, in replicate order, with variance updates."""
    df = runs_table(ds).sort_values(["config", "replicate"])
    out: dict[str, list[str]] = {}
    counter = start_iter
    for config, grp in df.groupby("config", sort=False):
        entries = []
        seen_conn, seen_vrest = [], []
        for _, r in grp.iterrows():
            cfgj = _json(r["config_json"])
            t = cfgj.get("training", {})
            seen_conn.append(r["connectivity_R2"])
            seen_vrest.append(r["V_rest_R2"])
            mode = {"robustness": "same-data-robustness", "generalisation": "different-data-generalization",
                    "custom": "user-chosen"}.get(r["seed_mode"], r["seed_mode"])
            status = {"converged": "converged", "partial": "partial"}.get(r["status"], "failed")
            entries.append("\n".join([
                f"## Iter {counter}: {status}",
                f"Node: id={counter}, parent=root",
                f"Mode/Strategy: block {int(ds.attrs.get('block', -1))} grid, config {config}",
                f"Seeds: sim_seed={r['sim_seed']}, train_seed={r['train_seed']}, rationale={mode}",
                f"Config: lr_W={t.get('lr_W')}, lr={t.get('lr')}, lr_emb={t.get('lr_embedding')}, "
                f"joint_ratio={t.get('alternate_joint_ratio') if t.get('alternate_training') else 'n/a (standard)'}, "
                f"lr_ratio={t.get('alternate_lr_ratio') if t.get('alternate_training') else 'n/a'}, "
                f"n_epochs={t.get('n_epochs')}, aug_loop={t.get('data_augmentation_loop')}",
                f"Metrics: connectivity_R2={_f(r['connectivity_R2'])}, tau_R2={_f(r['tau_R2'])}, "
                f"V_rest_R2={_f(r['V_rest_R2'])}, cluster_accuracy={_f(r['cluster_accuracy'])}, "
                f"test_R2={_f(r['test_R2'])}, test_pearson={_f(r['test_pearson'])}, "
                f"training_time_min={_f(r['training_time_min'], 2)}",
                "R2 trajectory: " + ", ".join(
                    f"{n} peak={_f(r[f'{n}_peak'])} final={_f(r[f'{n}_final'])} trend={r[f'{n}_trend'] or 'n/a'}"
                    f" (peak in {r[f'{n}_peak_phase'] or 'n/a'} phase)" for n in ("conn", "vrest", "tau")),
                "Embedding: see the block report's embedding panel for representative runs",
                "Mutation: none (grid run)",
                "Parent rule: grid enumeration (block design), not an adaptive search",
                f"Observation: {r['reason'] or 'run completed'}",
                f"Variance update: {config} now has {len(seen_conn)} runs, CV(conn_R2)={_cv(seen_conn)}, "
                f"CV(V_rest_R2)={_cv(seen_vrest)}",
                "Next: parent=root",
            ]))
            counter += 1
        out[str(config)] = entries
    return out


def append_analysis_logs(ds: xr.Dataset, folder: str | Path) -> list[Path]:
    """Append each config's entries to ``{config}_analysis.md`` (skipping entries already there)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for config, entries in analysis_entries(ds).items():
        safe = "".join(ch if ch.isalnum() or ch in "._=-" else "_" for ch in config)
        path = folder / f"{safe}_analysis.md"
        existing = path.read_text() if path.exists() else ""
        new = [e for e in entries if e.split("\n", 4)[3] not in existing]  # keyed by the Seeds line
        if new:
            with open(path, "a") as fh:
                fh.write("\n\n".join(new) + "\n\n")
        written.append(path)
    return written


def _json(text: str) -> dict:
    import json

    try:
        return json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {}


def _f(x, digits: int = 3) -> str:
    return "nan" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _cv(values) -> str:
    x = np.asarray(values, float)
    x = x[np.isfinite(x)]
    if x.size < 2 or x.mean() == 0:
        return "n/a"
    return f"{100 * x.std(ddof=1) / x.mean():.1f}%"


__all__ = ["combine_runs", "runs_table", "config_statistics", "ranking", "variance_table", "block_dataset",
           "save_block", "load_block", "paired_comparison", "describe_comparison", "analysis_entries",
           "append_analysis_logs", "HEADLINE_METRICS"]
