"""Block figures: metric distributions, R2 trajectories, embeddings of representative runs."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr

from flyvis_study.evaluation.figure import PHASE_COLOURS, embedding_plot
from flyvis_study.evaluation.names import HEADLINE_METRICS
from flyvis_study.study.comparison import PairedComparison
from flyvis_study.study.results import runs_table
from flyvis_study.world.connectome import cached_connectome


# ----------------------------------------------------------------------------- figures
def distribution_figure(ds: xr.Dataset, metrics=HEADLINE_METRICS) -> plt.Figure:
    """Strip + box plot of each metric per config."""
    df = runs_table(ds)
    configs = list(dict.fromkeys(df["config"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.6), squeeze=False)
    rng = np.random.default_rng(0)
    for ax, m in zip(axes[0], metrics):
        data = [df[df["config"] == c][m].dropna().to_numpy() for c in configs]
        ax.boxplot(data, widths=0.5, showfliers=False)
        for k, d in enumerate(data):
            ax.scatter(np.full(d.size, k + 1) + rng.uniform(-0.12, 0.12, d.size), d, s=14, zorder=3)
        ax.set_xticks(range(1, len(configs) + 1), configs, rotation=30, ha="right", fontsize=7)
        ax.set_title(m, fontsize=9)
    fig.tight_layout()
    return fig


def trajectory_figure(ds: xr.Dataset) -> plt.Figure:
    """Mean (line) and per-run (thin) R2 trajectories per config, phases shaded."""
    configs = list(ds["config"].values)
    fig, axes = plt.subplots(1, len(configs), figsize=(4.6 * len(configs), 3.4), squeeze=False, sharey=True)
    if "step" not in ds.dims:
        return fig
    for ax, cfg in zip(axes[0], configs):
        sub = ds.sel(config=cfg)
        phase = sub["traj_phase"].stack(run=("ground_truth", "sim_seed", "train_seed")).dropna("run", how="all")
        if phase.sizes.get("run", 0):
            ph = phase.isel(run=0).values
            steps = ds["step"].values
            ok = np.isfinite(ph)
            for s0, s1, p in zip(steps[ok][:-1], steps[ok][1:], ph[ok][:-1]):
                ax.axvspan(s0, s1, color=PHASE_COLOURS["V_rest" if p > 0.5 else "joint"], lw=0)
        for name, colour in (("traj_conn", "tab:blue"), ("traj_vrest", "tab:orange"), ("traj_tau", "tab:green")):
            runs = sub[name].stack(run=("ground_truth", "sim_seed", "train_seed")).dropna("run", how="all")
            for r in range(runs.sizes.get("run", 0)):
                y = runs.isel(run=r)
                ok = np.isfinite(y.values)
                ax.plot(ds["step"].values[ok], y.values[ok], color=colour, lw=0.5, alpha=0.35)
            mean = runs.mean("run", skipna=True)
            ok = np.isfinite(mean.values)
            ax.plot(ds["step"].values[ok], mean.values[ok], color=colour, lw=2,
                    label=name.replace("traj_", ""))
        ax.set(title=str(cfg), xlabel="iteration", ylim=(-0.05, 1.02))
        ax.legend(fontsize=7, loc="lower right")
    axes[0][0].set_ylabel("R2 (blue band: joint, orange: V_rest focus)")
    fig.tight_layout()
    return fig


def representative_runs(ds: xr.Dataset) -> pd.DataFrame:
    """Per config, the run whose connectivity_R2 is closest to the config's median."""
    df = runs_table(ds)
    picks = []
    for _, grp in df.groupby("config", sort=False):
        grp = grp.dropna(subset=["connectivity_R2"])
        if len(grp):
            med = grp["connectivity_R2"].median()
            picks.append(grp.iloc[int(np.argmin(np.abs(grp["connectivity_R2"] - med)))])
    return pd.DataFrame(picks)


def embedding_figure(ds: xr.Dataset, out_dir: str | Path) -> plt.Figure | None:
    """Embeddings of the representative run of each config, coloured by cell type."""
    reps = representative_runs(ds)
    items = []
    for _, r in reps.iterrows():
        path = Path(out_dir) / "runs" / r["run_id"] / "recovered.npz"
        if path.is_file():
            cfg = json.loads(r["config_json"])
            items.append((r, np.load(path)["embedding"], cfg["simulation"]["extent"]))
    if not items:
        return None
    fig, axes = plt.subplots(1, len(items), figsize=(4.6 * len(items), 4.2), squeeze=False)
    for ax, (r, emb, extent) in zip(axes[0], items):
        con = cached_connectome(extent)
        embedding_plot(ax, emb, con.node_type, con.cell_types)
        where = "" if r["ground_truth"].startswith("synthetic/") else f"{r['ground_truth']}, "
        ax.set_title(f"{r['config']} ({where}s{r['sim_seed']}, t{r['train_seed']}; conn {r['connectivity_R2']:.2f})",
                     fontsize=8)
    fig.tight_layout()
    return fig


def paired_figure(comparisons: list[PairedComparison], title_of=lambda c: c.treatment_config) -> plt.Figure | None:
    """Per metric, one line per seed pair from the baseline to the treatment; then a forest plot.

    ``comparisons``: ``study.comparison.PairedComparison`` (any configs and metrics).
    Left panels: metric value under the baseline (left end) and the treatment (right end) of
    each shared (sim_seed, train_seed) pair, one pair of columns per treatment. Right panel:
    the mean paired difference (treatment - baseline) with its 95 % t interval, per
    treatment and metric, and the zero line.
    """
    shown = [c for c in comparisons if c.n_pairs > 0]
    if not shown:
        return None
    metrics = list(dict.fromkeys(c.metric for c in shown))
    treatments = list(dict.fromkeys(title_of(c) for c in shown))
    n_rows = len(metrics) * len(treatments)  # forest rows; panels grow with them so every label fits
    wide = 1.6 if len(treatments) < 3 else 2.4
    fig, axes = plt.subplots(1, len(metrics) + 1,
                             figsize=(max(3.3, 0.9 * len(treatments)) * len(metrics) + 3.1 * wide,
                                      max(3.8, 0.18 * n_rows + 1.8)),
                             gridspec_kw={"width_ratios": [1] * len(metrics) + [wide]})
    for ax, metric in zip(axes[:-1], metrics):
        for k, name in enumerate(treatments):
            c = next((c for c in shown if c.metric == metric and title_of(c) == name), None)
            if c is None:
                continue
            x = (2.5 * k, 2.5 * k + 1)
            for b, t in zip(c.baseline, c.treatment):
                ax.plot(x, (b, t), color="tab:red" if t < b else "tab:blue", lw=1, marker="o", ms=3, alpha=0.8)
        ticks = [x for k in range(len(treatments)) for x in (2.5 * k, 2.5 * k + 1)]
        labels = [lab for name in treatments for lab in (next(c.baseline_config for c in shown
                                                               if title_of(c) == name), name)]
        ax.set_xticks(ticks, labels, rotation=30, ha="right", fontsize=7)
        ax.set_title(f"{metric} per seed pair", fontsize=9)
    forest = axes[-1]
    rows = [c for name in treatments for m in metrics for c in shown if title_of(c) == name and c.metric == m]
    y = np.arange(len(rows))[::-1]
    colours = {m: f"C{i}" for i, m in enumerate(metrics)}
    for yy, c in zip(y, rows):
        lo, hi = c.t_low, c.t_high
        if np.isfinite(lo) and np.isfinite(hi):
            forest.plot((lo, hi), (yy, yy), color=colours[c.metric], lw=2)
        forest.plot(c.mean_difference, yy, "o", color=colours[c.metric])
    forest.axvline(0, color="k", lw=0.8)
    forest.set_yticks(y, [f"{title_of(c)}: {c.metric}" for c in rows], fontsize=7)
    forest.set_xlabel("paired difference, treatment - baseline (95 % t interval)", fontsize=8)
    forest.set_title("mean paired difference", fontsize=9)
    fig.tight_layout()
    return fig
