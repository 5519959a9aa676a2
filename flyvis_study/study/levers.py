"""Block 6 analysis: which lever recovers V_rest, paired on shared seed pairs.

A block 6 config is one cell (arm, blank_fraction, noise_level) of the factorial
(``study.blocks``), read from the block file's factor coordinates. Every comparison is
``study.comparison.paired_comparison`` (treatment - control on the (ground_truth, sim_seed,
train_seed) cells both have: mean difference, 95 % percentile-bootstrap CI, paired t, Wilcoxon
signed-rank, d_z = mean / sd of the differences), of four kinds (``KINDS``):

- ``vs standard_1_epoch``, ``vs standard_2_epochs``: each arm against the control arm at the
  same blank fraction and noise level (standard_2_epochs is the control at equal budget for
  every 2-epoch arm);
- ``blank``: each arm at a blank fraction > 0 against the same arm at blank 0 (same noise);
- ``vs gold standard``: every cell against standard_1_epoch at blank 0 and the first noise
  level, the reference a user starts from; ``lever_ranking`` ranks these by the V_rest_R2 gain.

Metrics (``LEVER_METRICS``): V_rest_R2, conn_R2 and tau_R2 under both R2 definitions
(``evaluation.names.R2_DEFINITION_OF``: ``affine``, the seed's squared Pearson r of the fit
learned = a * true + b; ``identity``, 1 - SS_res / SS_tot about learned = true on inliers).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import xarray as xr

from flyvis_study.evaluation.names import R2_DEFINITION_OF
from flyvis_study.study.comparison import paired_comparison
from flyvis_study.study.record import SCHEMA_VERSION
from flyvis_study.study.results import runs_table

LEVER_METRICS = ("V_rest_R2", "V_rest_R2_identity", "connectivity_R2", "connectivity_R2_identity", "tau_R2",
                 "tau_R2_identity")
CONTROLS = ("standard_1_epoch", "standard_2_epochs")
GOLD_STANDARD = "standard_1_epoch"
KINDS = ("vs standard_1_epoch", "vs standard_2_epochs", "blank", "vs gold standard")
COMPARISON_COLUMNS = ["kind", "arm", "blank_fraction", "noise_level", "control", "metric", "definition", "n_pairs",
                      "mean_baseline", "mean_treatment", "mean_difference", "ci95_low", "ci95_high",
                      "effect_size_dz", "ttest_p", "wilcoxon_p", "n_positive"]


LEVER_FACTORS = ("arm", "blank_fraction", "noise_level")


def lever_factors(ds: xr.Dataset) -> pd.DataFrame:
    """Per config label with runs: arm, blank_fraction, noise_level (the block file's factor
    coordinates along ``config``)."""
    missing = [name for name in LEVER_FACTORS if name not in ds.coords]
    if missing:
        raise ValueError(f"block file without the factor coordinate(s) {', '.join(missing)} (written before "
                         f"schema {SCHEMA_VERSION}); run `flyvis-study migrate <its folder>`")
    table = pd.DataFrame({name: ds[name].values for name in LEVER_FACTORS}, index=ds["config"].values)
    table.index.name = "config"
    table[["blank_fraction", "noise_level"]] = table[["blank_fraction", "noise_level"]].astype(float)
    return table.loc[table.index.isin(set(runs_table(ds)["config"]))]


def _t_interval(x: np.ndarray) -> tuple[float, float]:
    """95 % t interval of the mean of x (NaN with fewer than two values)."""
    from scipy import stats as st

    if x.size < 2:
        return math.nan, math.nan
    half = st.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return float(x.mean() - half), float(x.mean() + half)


def lever_table(ds: xr.Dataset, metrics=LEVER_METRICS) -> pd.DataFrame:
    """One row per cell (arm, blank_fraction, noise_level): runs, and per metric the mean, SD and
    95 % t interval of the mean over its runs."""
    df = runs_table(ds).drop(columns=list(LEVER_FACTORS), errors="ignore").join(lever_factors(ds), on="config")
    rows = []
    for (arm, blank, noise), grp in df.groupby(["arm", "blank_fraction", "noise_level"], sort=False):
        row = {"arm": arm, "blank_fraction": blank, "noise_level": noise, "runs": len(grp)}
        for m in metrics:
            x = grp[m].to_numpy(dtype=float) if m in grp else np.zeros(0)
            x = x[np.isfinite(x)]
            lo, hi = _t_interval(x)
            row.update({f"{m}_mean": float(x.mean()) if x.size else math.nan,
                        f"{m}_sd": float(x.std(ddof=1)) if x.size > 1 else math.nan,
                        f"{m}_ci95_low": lo, f"{m}_ci95_high": hi})
        rows.append(row)
    return _arm_order(pd.DataFrame(rows)).set_index(["arm", "blank_fraction", "noise_level"])


def _arm_order(df: pd.DataFrame) -> pd.DataFrame:
    """Rows in ``ARMS`` order (unknown arms last), then by noise level and blank fraction."""
    from flyvis_study.study.blocks import ARMS

    order = {a: i for i, a in enumerate(ARMS)}
    if df.empty:
        return df
    return df.sort_values(["arm", "noise_level", "blank_fraction"],
                          key=lambda col: col.map(lambda a: order.get(a, len(order))) if col.name == "arm" else col)


def lever_comparisons(ds: xr.Dataset, metrics=LEVER_METRICS, n_resamples: int = 9999) -> list[dict]:
    """Every paired comparison of the four ``KINDS`` (module docstring), each a
    ``paired_comparison`` dict plus kind, arm, blank_fraction, noise_level, control, definition."""
    factors = lever_factors(ds)
    present = set(runs_table(ds).columns)
    metrics = [m for m in metrics if m in present]
    cell = {(r.arm, r.blank_fraction, r.noise_level): config for config, r in factors.iterrows()}
    noise_levels = list(dict.fromkeys(factors["noise_level"]))
    out = []

    def compare(kind, control_cell, treatment_cell, control_name):
        a, b = cell.get(control_cell), cell.get(treatment_cell)
        if a is None or b is None or a == b:
            return
        arm, blank, noise = treatment_cell
        for m in metrics:
            c = paired_comparison(ds, ds, m, baseline_config=a, treatment_config=b, n_resamples=n_resamples)
            out.append({"kind": kind, "arm": arm, "blank_fraction": blank, "noise_level": noise,
                        "control": control_name, "definition": R2_DEFINITION_OF.get(m, ""), **c})

    for (arm, blank, noise) in cell:
        for control in CONTROLS:
            if arm != control:
                compare(f"vs {control}", (control, blank, noise), (arm, blank, noise), control)
        if blank > 0:
            compare("blank", (arm, 0.0, noise), (arm, blank, noise), f"{arm} at blank 0")
        compare("vs gold standard", (GOLD_STANDARD, 0.0, noise_levels[0]), (arm, blank, noise),
                f"{GOLD_STANDARD} at blank 0, noise {noise_levels[0]:g}")
    return out


def comparison_frame(comparisons: list[dict], kind: str | None = None) -> pd.DataFrame:
    """The comparisons (of one kind, or all) as a table with ``COMPARISON_COLUMNS``."""
    rows = [c for c in comparisons if kind is None or c["kind"] == kind]
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def lever_ranking(comparisons: list[dict], definition: str = "affine") -> pd.DataFrame:
    """Cells ranked by their paired V_rest_R2 gain over the gold standard (``vs gold standard``),
    with the conn_R2 and tau_R2 changes beside it, all under one R2 ``definition``."""
    suffix = "" if definition == "affine" else "_identity"
    rows = {}
    for c in comparisons:
        if c["kind"] != "vs gold standard":
            continue
        key = (c["arm"], c["blank_fraction"], c["noise_level"])
        for short, metric in (("V_rest", "V_rest_R2"), ("conn", "connectivity_R2"), ("tau", "tau_R2")):
            if c["metric"] == metric + suffix:
                rows.setdefault(key, {"arm": key[0], "blank_fraction": key[1], "noise_level": key[2],
                                      "n_pairs": c["n_pairs"]})
                rows[key].update({f"{short}_difference": c["mean_difference"], f"{short}_ci95_low": c["ci95_low"],
                                  f"{short}_ci95_high": c["ci95_high"]})
    table = pd.DataFrame(list(rows.values()))
    if table.empty:
        return table
    return table.sort_values("V_rest_difference", ascending=False).reset_index(drop=True)


def epoch_boundary_table(ds: xr.Dataset) -> pd.DataFrame:
    """What happens to conn_R2 and V_rest_R2 (in-loop, affine) at the start of epoch 2.

    Per cell with >= 2 epochs, means over its runs of: the value at the last metrics.log row
    of epoch 1 (``end_epoch1``), the lowest value in the first tenth of epoch 2
    (``min_early_epoch2``), the value at the run's last row (``end``), and ``drop`` =
    min_early_epoch2 - end_epoch1, with the number of runs whose drop is below -0.01.
    (Epochs are counted from 1 here, as in prose; metrics.log counts from 0.)
    """
    if "step" not in ds.dims:
        return pd.DataFrame()
    factors = lever_factors(ds)
    steps = ds["step"].values
    rows = []
    for config in ds["config"].values:
        sub = ds.sel(config=config).stack(run=("ground_truth", "sim_seed", "train_seed"))
        epoch = sub["traj_epoch"]
        values: dict[str, list] = {}
        n_iter = None
        for r in range(sub.sizes["run"]):
            e = epoch.isel(run=r).values
            ok = np.isfinite(e)
            if not ok.any() or e[ok].max() < 1:
                continue
            if n_iter is None:
                per_epoch = sub["n_iterations_per_epoch"].isel(run=r).item()
                n_iter = int(per_epoch) if np.isfinite(per_epoch) else None
            for name, short in (("traj_conn", "conn"), ("traj_vrest", "V_rest")):
                y = sub[name].isel(run=r).values
                first = ok & (e == 0)
                second = ok & (e == 1)
                if n_iter:
                    second &= steps < n_iter + n_iter // 10 + 1
                if not first.any() or not second.any():
                    continue
                end1 = y[np.nonzero(first)[0][-1]]
                early = np.nanmin(y[second])
                values.setdefault(short, []).append((end1, early, y[np.nonzero(ok)[0][-1]]))
        if not values:
            continue
        f = factors.loc[config]
        row = {"arm": f["arm"], "blank_fraction": f["blank_fraction"], "noise_level": f["noise_level"]}
        for short, triples in values.items():
            arr = np.array(triples, dtype=float)
            drop = arr[:, 1] - arr[:, 0]
            row.update({f"{short}_end_epoch1": arr[:, 0].mean(), f"{short}_min_early_epoch2": arr[:, 1].mean(),
                        f"{short}_end": arr[:, 2].mean(), f"{short}_drop": drop.mean(),
                        f"{short}_runs_dropping": int((drop < -0.01).sum()), "runs": len(arr)})
        rows.append(row)
    return _arm_order(pd.DataFrame(rows)).reset_index(drop=True)
