"""Paired comparison of two blocks on shared (ground_truth, sim_seed, train_seed) cells: the same
simulated network and seeds under both."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import xarray as xr

from flyvis_study.study.results import runs_table

COMPARED_METRICS = ("V_rest_R2", "connectivity_R2", "tau_R2")


def paired_comparison(baseline: xr.Dataset, treatment: xr.Dataset, metric: str,
                      baseline_config: str | None = None, treatment_config: str | None = None,
                      n_resamples: int = 9999, seed: int = 0) -> dict:
    """treatment - baseline on shared (ground_truth, sim_seed, train_seed) cells of one config each.

    ``pairs`` lists the (sim_seed, train_seed) of each pair, ``ground_truths`` its network.
    """
    from scipy import stats as st

    def per_pair(ds, config):
        df = runs_table(ds)
        config = config if config is not None else df["config"].iloc[0]
        df = df[df["config"] == config]
        return df.set_index(["ground_truth", "sim_seed", "train_seed"])[metric], config

    a, a_cfg = per_pair(baseline, baseline_config)
    b, b_cfg = per_pair(treatment, treatment_config)
    joined = pd.concat({"baseline": a, "treatment": b}, axis=1, join="inner").dropna()
    diff = (joined["treatment"] - joined["baseline"]).to_numpy(dtype=float)
    out = {"metric": metric, "baseline_config": a_cfg, "treatment_config": b_cfg, "n_pairs": int(diff.size),
           "pairs": [[int(s), int(t)] for _, s, t in joined.index],
           "ground_truths": [str(g) for g, _, _ in joined.index], "baseline": joined["baseline"].tolist(),
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


def compare_with_baseline(baseline: xr.Dataset, treatment: xr.Dataset, configs: list[str],
                          metrics=COMPARED_METRICS) -> list[dict]:
    """``paired_comparison`` of each treatment config with the baseline (its first config), per metric."""
    return [paired_comparison(baseline, treatment, metric, treatment_config=cfg) for cfg in configs
            for metric in metrics]
