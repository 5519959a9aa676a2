"""Block 6 report (V_rest levers): the two answers, tables and figures (``study.levers``).

Questions answered, with the rules of ``report.verdicts`` (raised: the 95 % bootstrap CI of
the paired V_rest_R2 difference lies above 0; kept: its conn_R2 CI's lower end is above -0.02):
1. Does two-stage training raise V_rest_R2 while keeping conn_R2 at equal budget (two_stage
   against standard_2_epochs, at each blank fraction and noise level)?
2. Which lever raises V_rest_R2 most over the gold standard (standard_1_epoch at blank 0), at
   what cost in conn_R2 and tau_R2?
Each number is given under its R2 definition (``affine`` or ``identity``, ``evaluation.recovery``).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr

from flyvis_study.evaluation.figure import PHASE_COLOURS
from flyvis_study.report.figures import paired_figure
from flyvis_study.report.verdicts import KEEP_MARGIN, KEEP_RULE, RAISE_RULE
from flyvis_study.study.blocks import ARMS
from flyvis_study.study.levers import (
    LEVER_METRICS,
    comparison_frame,
    epoch_boundary_table,
    lever_comparisons,
    lever_factors,
    lever_ranking,
    lever_table,
)

__all__ = ["answers", "headline", "lever_comparisons", "lever_table", "comparison_frame", "lever_ranking",
           "epoch_boundary_table", "paired_lines_figure", "forest_figure", "vrest_trajectory_figure", "show_report"]


def _cell(c: dict) -> str:
    return f"{c['arm']} (blank {c['blank_fraction']:g}, noise {c['noise_level']:g})"


def _ci(c: dict) -> str:
    return f"{c['mean_difference']:+.3f} [{c['ci95_low']:+.3f}, {c['ci95_high']:+.3f}]"


def answers(comparisons: list[dict]) -> str:
    """Markdown: the answer to both questions (module docstring), with numbers and rules."""
    lines = ["**1. Does two-stage raise V_rest_R2 while keeping conn_R2 at equal budget?** "
             "(two_stage - standard_2_epochs, mean paired difference [95 % bootstrap CI])"]
    by = {(c["kind"], c["arm"], c["blank_fraction"], c["noise_level"], c["metric"]): c for c in comparisons
          if c["n_pairs"] > 0}
    cells = sorted({k[1:4] for k in by if k[0] == "vs standard_2_epochs" and k[1] == "two_stage"},
                   key=lambda k: (k[2], k[1]))
    for _, blank, noise in cells:
        v, vi, k, ki = (by.get(("vs standard_2_epochs", "two_stage", blank, noise, m)) for m in
                        ("V_rest_R2", "V_rest_R2_identity", "connectivity_R2", "connectivity_R2_identity"))
        if v is None or k is None:
            continue
        raised = v["ci95_low"] > 0
        kept = k["ci95_low"] > KEEP_MARGIN
        lines.append(f"- blank {blank:g}, noise {noise:g}, {v['n_pairs']} seed pairs: V_rest_R2 (affine) {_ci(v)}"
                     + (f", (identity) {_ci(vi)}" if vi else "") + f"; conn_R2 (affine) {_ci(k)}"
                     + (f", (identity) {_ci(ki)}" if ki else "")
                     + f". **{'Raised' if raised else 'Not shown to rise'}**, conn_R2 "
                     f"**{'kept' if kept else 'not shown to be kept'}**.")
    if len(lines) == 1:
        lines.append("- not measured (needs the arms two_stage and standard_2_epochs on shared seed pairs)")
    lines += ["", "**2. Which lever raises V_rest_R2 most over the gold standard (standard_1_epoch, blank 0)?**"]
    for definition in ("affine", "identity"):
        ranked = lever_ranking(comparisons, definition)
        if ranked.empty or "V_rest_difference" not in ranked:
            continue
        top = ranked.iloc[0]
        costs = (("conn", "conn_R2"), ("tau", "tau_R2"))
        cost = ", ".join(f"{name} {top[f'{short}_difference']:+.3f} [{top[f'{short}_ci95_low']:+.3f}, "
                         f"{top[f'{short}_ci95_high']:+.3f}]" for short, name in costs
                         if f"{short}_difference" in top and np.isfinite(top[f"{short}_difference"]))
        raised = ranked[ranked["V_rest_ci95_low"] > 0]
        verdict = (f"{len(raised)} of {len(ranked)} cells raise V_rest_R2 (CI above 0); the largest gain"
                   if len(raised) else f"none of {len(ranked)} cells is shown to raise V_rest_R2; the best")
        lines.append(f"- {definition} R2: {verdict} is **{top['arm']} at blank {top['blank_fraction']:g}, noise "
                     f"{top['noise_level']:g}**: V_rest_R2 {top['V_rest_difference']:+.3f} "
                     f"[{top['V_rest_ci95_low']:+.3f}, {top['V_rest_ci95_high']:+.3f}] on {int(top['n_pairs'])} pairs; "
                     f"at a cost of {cost or 'n/a'} (same definition).")
    if lines[-1].startswith("**2."):
        lines.append("- not measured (needs standard_1_epoch at blank 0 and another cell on shared seed pairs)")
    lines += ["", f"Rules: V_rest_R2 is raised when {RAISE_RULE}; conn_R2 is kept when {KEEP_RULE}. Arms other "
                  "than standard_1_epoch train 2 epochs: against the gold standard they have twice its budget; "
                  "against standard_2_epochs the budget is equal."]
    return "\n".join(lines)


def headline(comparisons: list[dict]) -> str:
    """One line for the study index: two_stage - standard_2_epochs (V_rest_R2, conn_R2; affine) at
    each blank fraction, and the best lever's V_rest_R2 change against the gold standard."""
    parts = []
    for c in comparisons:
        if c["kind"] == "vs standard_2_epochs" and c["arm"] == "two_stage" and c["n_pairs"] > 0 and \
                c["metric"] in ("V_rest_R2", "connectivity_R2"):
            parts.append(f"{c['metric']} {_ci(c)} at blank {c['blank_fraction']:g}")
    text = ("two_stage - standard_2_epochs (affine R2, mean paired difference [95 % CI]): " + "; ".join(parts)
            if parts else "two_stage vs standard_2_epochs: not measured")
    ranked = lever_ranking(comparisons, "affine")
    if not ranked.empty and "V_rest_difference" in ranked:
        top = ranked.iloc[0]
        text += (f". Best V_rest_R2 change against the gold standard: {top['arm']} at blank {top['blank_fraction']:g}, "
                 f"{top['V_rest_difference']:+.3f} [{top['V_rest_ci95_low']:+.3f}, {top['V_rest_ci95_high']:+.3f}]")
    return text


def _label(c: dict) -> str:
    kind = "blank effect" if c["kind"] == "blank" else c["kind"]
    return f"{c['arm']}, blank {c['blank_fraction']:g}" + (f", noise {c['noise_level']:g}" if c.get("multi_noise")
                                                           else "") + f" ({kind})"


def paired_lines_figure(comparisons: list[dict], kind: str = "vs standard_2_epochs",
                        metrics=("V_rest_R2", "V_rest_R2_identity", "connectivity_R2")) -> plt.Figure | None:
    """One line per seed pair from the control to the arm (``report.figures.paired_figure``) for
    the comparisons of one kind, with their forest plot."""
    shown = [c for c in comparisons if c["kind"] == kind and c["metric"] in metrics]
    return paired_figure(shown, title_of=lambda c: f"{c['arm']} b{c['blank_fraction']:g} n{c['noise_level']:g}")


def forest_figure(comparisons: list[dict], kinds=("vs standard_1_epoch", "vs standard_2_epochs", "blank"),
                  metrics=LEVER_METRICS) -> plt.Figure | None:
    """Paired differences with 95 % bootstrap CIs: one panel per metric (both R2 definitions),
    one row per comparison (arm, blank fraction, kind)."""
    arms = list(ARMS)
    rows = sorted((c for c in comparisons if c["kind"] in kinds and c["n_pairs"] > 0),
                  key=lambda c: (kinds.index(c["kind"]), arms.index(c["arm"]) if c["arm"] in arms else len(arms),
                                 c["blank_fraction"], c["noise_level"]))
    metrics = [m for m in metrics if any(c["metric"] == m for c in rows)]
    if not rows or not metrics:
        return None
    multi = len({c["noise_level"] for c in rows}) > 1
    labels = list(dict.fromkeys(_label({**c, "multi_noise": multi}) for c in rows))
    ncol = 2
    nrow = int(np.ceil(len(metrics) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(12, 0.32 * len(labels) * nrow + 1.5), squeeze=False, sharey=True)
    y = {lab: i for i, lab in enumerate(labels[::-1])}
    colours = {k: f"C{i}" for i, k in enumerate(kinds)}
    for ax, m in zip(axes.ravel(), metrics):
        for c in rows:
            if c["metric"] != m:
                continue
            yy = y[_label({**c, "multi_noise": multi})]
            if np.isfinite(c["ci95_low"]) and np.isfinite(c["ci95_high"]):
                ax.plot((c["ci95_low"], c["ci95_high"]), (yy, yy), color=colours[c["kind"]], lw=2)
            ax.plot(c["mean_difference"], yy, "o", color=colours[c["kind"]], ms=4)
        ax.axvline(0, color="k", lw=0.8)
        ax.set_title(f"{m} ({'identity' if m.endswith('_identity') else 'affine'} R2)", fontsize=9)
        ax.set_xlabel("paired difference, arm - control (95 % CI)", fontsize=8)
        ax.set_yticks(list(y.values()), list(y.keys()), fontsize=7)
    for ax in axes.ravel()[len(metrics):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def vrest_trajectory_figure(ds: xr.Dataset, metric: str = "traj_vrest") -> plt.Figure | None:
    """In-loop V_rest_R2 (affine; ``traj_conn`` for conn_R2) over training, one panel per
    (blank fraction, noise level), one colour per arm: the mean over seed pairs (thick) and each
    run (thin). Shaded: two-stage's V_rest-focus phases (orange); dotted: epoch boundaries."""
    if "step" not in ds.dims:
        return None
    factors = lever_factors(ds)
    panels = sorted(set(zip(factors["blank_fraction"], factors["noise_level"])), key=lambda p: (p[1], p[0]))
    arms = [a for a in ARMS if a in set(factors["arm"])] + sorted(set(factors["arm"]) - set(ARMS))
    factors = factors.sort_values("arm", key=lambda col: col.map(arms.index))
    colours = {a: f"C{i}" for i, a in enumerate(arms)}
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False, sharey=True)
    steps = ds["step"].values
    for ax, (blank, noise) in zip(axes[0], panels):
        shaded = False
        for config, f in factors.iterrows():
            if (f["blank_fraction"], f["noise_level"]) != (blank, noise):
                continue
            sub = ds.sel(config=config).stack(run=("ground_truth", "sim_seed", "train_seed"))
            runs = sub[metric].dropna("run", how="all")
            if not runs.sizes.get("run", 0):
                continue
            for r in range(runs.sizes["run"]):
                y = runs.isel(run=r).values
                ok = np.isfinite(y)
                ax.plot(steps[ok], y[ok], color=colours[f["arm"]], lw=0.5, alpha=0.3)
            mean = runs.mean("run", skipna=True).values
            ok = np.isfinite(mean)
            ax.plot(steps[ok], mean[ok], color=colours[f["arm"]], lw=2, label=f["arm"])
            phase = sub["traj_phase"].dropna("run", how="all")
            if f["arm"].startswith("two_stage") and not shaded and phase.sizes.get("run", 0):
                ph = phase.isel(run=0).values
                good = np.isfinite(ph)
                for s0, s1, p in zip(steps[good][:-1], steps[good][1:], ph[good][:-1]):
                    if p > 0.5:
                        ax.axvspan(s0, s1, color=PHASE_COLOURS["V_rest"], lw=0, zorder=0)
                shaded = True
            per_epoch = float(sub["n_iterations_per_epoch"].max())
            if np.isfinite(per_epoch):
                for e in range(1, int(np.nanmax(sub["n_epochs"].values)) if np.isfinite(sub["n_epochs"]).any() else 1):
                    ax.axvline(e * per_epoch, color="0.4", ls=":", lw=1)
        ax.set(title=f"blank {blank:g}, noise {noise:g}", xlabel="iteration")
        ax.legend(fontsize=7, loc="best")
    name = "V_rest_R2" if metric == "traj_vrest" else metric.replace("traj_", "") + "_R2"
    axes[0][0].set_ylabel(f"{name} in the loop (affine R2)")
    fig.tight_layout()
    return fig


def _rounded(df: pd.DataFrame) -> pd.DataFrame:
    return df.round(4)


SECTIONS = ("Answers", "Arm x blank x noise: means and 95 % t intervals (both R2 definitions)",
            "Paired comparisons against standard_1_epoch and standard_2_epochs, and the blank effect",
            "Forest plot: paired differences with 95 % CIs per arm and metric",
            "Paired plot: two-stage and the other arms against standard_2_epochs (equal budget)",
            "Paired plot: every arm against standard_1_epoch",
            "Levers ranked by the V_rest_R2 gain over the gold standard (affine, then identity R2)",
            "At the start of epoch 2: conn_R2 and V_rest_R2 (in-loop, affine)",
            "V_rest_R2 during training (in-loop, affine; orange: two-stage's V_rest-focus phases)",
            "conn_R2 during training (in-loop, affine)")


def show_report(ds: xr.Dataset, comparisons: list[dict] | None = None) -> list[dict]:
    """Display every section of the block 6 report in order (in a notebook); returns the comparisons."""
    from IPython.display import Markdown, display

    comparisons = lever_comparisons(ds) if comparisons is None else comparisons

    def figure(fig):
        if fig is not None:
            display(fig)
            plt.close(fig)
        else:
            display(Markdown("(not enough paired runs for this figure)"))

    def table(value):
        with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", None):
            display(value)

    frame = comparison_frame(comparisons)
    parts = [lambda: display(Markdown(answers(comparisons))),
             lambda: table(_rounded(lever_table(ds))),
             lambda: table(_rounded(frame[frame["kind"] != "vs gold standard"].set_index(
                 ["kind", "arm", "blank_fraction", "noise_level", "metric"]))),
             lambda: figure(forest_figure(comparisons)),
             lambda: figure(paired_lines_figure(comparisons, "vs standard_2_epochs")),
             lambda: figure(paired_lines_figure(comparisons, "vs standard_1_epoch")),
             lambda: (table(_rounded(lever_ranking(comparisons, "affine"))),
                      table(_rounded(lever_ranking(comparisons, "identity")))),
             lambda: table(_rounded(epoch_boundary_table(ds))),
             lambda: figure(vrest_trajectory_figure(ds)),
             lambda: figure(vrest_trajectory_figure(ds, "traj_conn"))]
    for title, show in zip(SECTIONS, parts):
        display(Markdown(f"### {title}"))
        show()
    return comparisons
