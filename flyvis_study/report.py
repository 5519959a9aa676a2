"""Block and study reports: figures and verdicts for the notebooks, papermill execution, HTML.

``execute_block(N, out_dir, parameters)`` runs ``notebooks/blockN_*.ipynb`` with papermill
into ``out_dir/blockN.ipynb`` and renders ``out_dir/blockN.html`` with nbconvert
(``--no-input``, no re-execution; figures are embedded, so the HTML is self-contained).
Parameter names are checked against ``papermill.inspect_notebook`` first.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr

from .plots import PHASE_COLOURS, embedding_plot
from .results import STAT_METRICS, describe_comparison, runs_table

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
BLOCK_NOTEBOOKS = {0: "block0_baseline.ipynb", 1: "block1_variance.ipynb", 2: "block2_joint_ratio.ipynb",
                   3: "block3_lr_ratio.ipynb", 4: "block4_budget.ipynb", 5: "block5_replication.ipynb"}
SUMMARY_NOTEBOOK = "study_summary.ipynb"


class ReportError(ValueError):
    """Bad input to a report command (unknown block, parameter, ...)."""


# ----------------------------------------------------------------------------- figures
def distribution_figure(ds: xr.Dataset, metrics=STAT_METRICS) -> plt.Figure:
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
    for cfg, grp in df.groupby("config", sort=False):
        grp = grp.dropna(subset=["connectivity_R2"])
        if len(grp):
            med = grp["connectivity_R2"].median()
            picks.append(grp.iloc[int(np.argmin(np.abs(grp["connectivity_R2"] - med)))])
    return pd.DataFrame(picks)


def embedding_figure(ds: xr.Dataset, out_dir: str | Path) -> plt.Figure | None:
    """Embeddings of the representative run of each config, coloured by cell type."""
    from .lattice import cached_connectome

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


# ----------------------------------------------------------------------------- verdicts
def block_verdict(block: int, stats: pd.DataFrame, ranked: pd.DataFrame, comparisons: list[dict] | None = None,
                  preset: str = "") -> str:
    """A one-paragraph verdict from the measured statistics."""
    parts = []
    for cfg, row in stats.iterrows():
        parts.append(
            f"**{cfg}** ({row['n_runs']} runs: {row['converged']} converged, {row['partial']} partial, "
            f"{row['failed']} failed): conn_R2 {row['connectivity_R2_mean']:.3f} (CV {100 * row['connectivity_R2_cv']:.1f} %, "
            f"min {row['connectivity_R2_min']:.3f}), V_rest_R2 {row['V_rest_R2_mean']:.3f} "
            f"(CV {100 * row['V_rest_R2_cv']:.1f} %, min {row['V_rest_R2_min']:.3f}), tau_R2 {row['tau_R2_mean']:.3f}; "
            f"{'robust' if row['robust'] else 'not robust'}{', fragile' if row['fragile'] else ''}.")
    text = " ".join(parts)
    if len(ranked) > 1:
        text += f" Best-ranked config: **{ranked.index[0]}** (score {ranked['score'].iloc[0]:.3f})."
    for c in comparisons or []:
        text += " " + describe_comparison(c)
    gold = 0.94
    conn = stats["connectivity_R2_mean"].max()
    text += (f" At the `{preset}` preset the best mean conn_R2 is {conn:.3f} "
             f"({'at or above' if conn >= gold - 0.01 else 'below'} the full-scale gold standard of ~{gold}); "
             "conclusions about the full-scale study need the `full` preset.")
    return text


# ----------------------------------------------------------------------------- execution
def notebook_path(block: int) -> Path:
    if block not in BLOCK_NOTEBOOKS:
        raise ReportError(f"block {block}: unknown; allowed: {', '.join(map(str, BLOCK_NOTEBOOKS))}")
    return NOTEBOOK_DIR / BLOCK_NOTEBOOKS[block]


def check_parameters(notebook: Path, parameters: dict) -> None:
    """Every name must be a parameter of the notebook (papermill would only warn)."""
    import papermill

    known = papermill.inspect_notebook(str(notebook))
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise ReportError(f"unknown parameter(s) {', '.join(unknown)} for {notebook.name}; "
                          f"allowed: {', '.join(sorted(known))}")


def render_html(executed: Path, html: Path) -> Path:
    """nbconvert HTML without input cells (no re-execution)."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(executed), as_version=4)
    body, _ = HTMLExporter(exclude_input=True, exclude_input_prompt=True,
                           exclude_output_prompt=True).from_notebook_node(nb)
    tmp = html.with_name(f".{html.name}.tmp")
    tmp.write_text(body)
    tmp.replace(html)
    return html


def execute_notebook(notebook: Path, executed: Path, parameters: dict, timeout: int | None = None) -> Path:
    import papermill

    executed.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(str(notebook), str(executed), parameters=parameters, kernel_name="python3",
                               progress_bar=False, cwd=str(NOTEBOOK_DIR.parent), execution_timeout=timeout)
    return executed


def execute_block(block: int, out_dir: str | Path, parameters: dict | None = None) -> dict[str, Path]:
    """papermill-run block N into out_dir, render HTML; returns the ipynb, html and nc paths."""
    out_dir = Path(out_dir).resolve()
    nb = notebook_path(block)
    params = {**(parameters or {}), "out_dir": str(out_dir)}
    check_parameters(nb, params)
    executed = execute_notebook(nb, out_dir / f"block{block}.ipynb", params)
    html = render_html(executed, out_dir / f"block{block}.html")
    return {"ipynb": executed, "html": html, "nc": out_dir / f"block{block}.nc"}


def execute_summary(out_dir: str | Path, parameters: dict | None = None) -> dict[str, Path]:
    out_dir = Path(out_dir).resolve()
    nb = NOTEBOOK_DIR / SUMMARY_NOTEBOOK
    params = {**(parameters or {}), "reports_dir": str(out_dir)}
    check_parameters(nb, params)
    executed = execute_notebook(nb, out_dir / "study_summary.ipynb", params)
    return {"ipynb": executed, "html": render_html(executed, out_dir / "study_summary.html")}
