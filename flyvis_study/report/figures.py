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
from flyvis_study.study.results import runs_table


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
        phase = sub["traj_phase"].stack(run=("sim_seed", "train_seed")).dropna("run", how="all")
        if phase.sizes.get("run", 0):
            ph = phase.isel(run=0).values
            steps = ds["step"].values
            ok = np.isfinite(ph)
            for s0, s1, p in zip(steps[ok][:-1], steps[ok][1:], ph[ok][:-1]):
                ax.axvspan(s0, s1, color=PHASE_COLOURS["V_rest" if p > 0.5 else "joint"], lw=0)
        for name, colour in (("traj_conn", "tab:blue"), ("traj_vrest", "tab:orange"), ("traj_tau", "tab:green")):
            runs = sub[name].stack(run=("sim_seed", "train_seed")).dropna("run", how="all")
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
    from flyvis_study.world.connectome import cached_connectome

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
        ax.set_title(f"{r['config']} (s{r['sim_seed']}, t{r['train_seed']}; conn {r['connectivity_R2']:.2f})",
                     fontsize=8)
    fig.tight_layout()
    return fig
