"""Report of a block with its own controls (blocks 6 and 7; ``study.levers``): answers, tables, figures.

Questions answered, with the rules of ``report.verdicts`` (raised: at least 8 seed pairs and the
95 % t interval of the paired V_rest_R2 difference above 0; kept: the lower end of conn_R2's t
interval above -0.02):
1. The block's focus (``BlockDefinition.focus``): does its treatment arm raise V_rest_R2 while
   keeping conn_R2 against its control at equal budget, at each level of the axes? (block 6:
   two_stage against standard_2_epochs; block 7: two_stage_constant_schedule against
   standard_2_epochs_constant_schedule, the phase split's own effect).
2. Which cell raises V_rest_R2 most over the gold standard (the baseline arm at the first level
   of every axis), at what cost in conn_R2 and tau_R2, under each R2 definition and readout?
Beside them: the readout's own effect (corrected - plain on the same runs), each cell in the
field's convention ``inliers [all] (% dropped)``, and the signed V_rest error per cell type.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr
from IPython.display import Markdown, display

from flyvis_study.evaluation.figure import PHASE_COLOURS
from flyvis_study.report.figures import paired_figure
from flyvis_study.report.verdicts import KEEP_MARGIN, KEEP_RULE, RAISE_RULE, raise_phrase
from flyvis_study.study.blocks import block_definition
from flyvis_study.study.comparison import PairedComparison, sign_flip_p, t_interval
from flyvis_study.study.levers import (
    GOLD_STANDARD_KIND,
    LEVER_METRICS,
    block_of,
    comparison_frame,
    epoch_boundary_table,
    factor_names,
    lever_comparisons,
    lever_factors,
    lever_ranking,
    lever_table,
)
from flyvis_study.study.results import runs_table
from flyvis_study.study.type_errors import type_errors

__all__ = ["answers", "headline", "lever_comparisons", "lever_table", "comparison_frame", "lever_ranking",
           "epoch_boundary_table", "field_table", "readout_table", "paired_lines_figure", "forest_figure",
           "type_error_figure", "vrest_trajectory_figure", "show_report"]

RANKINGS = (("affine", "plain"), ("affine", "corrected"), ("field", "plain"), ("field", "corrected"))
FIELD_PARAMETERS = (("W", "connectivity", ""), ("tau", "tau", ""), ("tau corrected", "tau", "_corrected"),
                    ("V_rest", "V_rest", ""), ("V_rest corrected", "V_rest", "_corrected"))


def _levels(levels: dict) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in levels.items())


def answers(comparisons: list[PairedComparison]) -> str:
    """Markdown: the answers to both questions (module docstring), with numbers and rules."""
    if not comparisons:
        return "Not measured: no paired runs yet."
    block = block_definition(comparisons[0].block)
    by = {(c.kind, c.arm, tuple(c.levels.items()), c.metric): c for c in comparisons if c.n_pairs > 0}
    lines = []
    if block.focus:
        arm, control = block.focus
        lines.append(f"**1. Does {arm} raise V_rest_R2 while keeping conn_R2 against {control} (equal budget)?** "
                     f"(mean paired difference [95 % t interval], exact sign-flip p)")
        cells = sorted({k[2] for k in by if k[0] == f"vs {control}" and k[1] == arm})
        for levels in cells:
            v = by.get((f"vs {control}", arm, levels, "V_rest_R2"))
            k = by.get((f"vs {control}", arm, levels, "connectivity_R2"))
            if v is None or k is None:
                continue
            extra = [f"({name}) {by[key].interval()}" for name, metric in
                     (("identity", "V_rest_R2_identity"), ("field", "V_rest_R2_field"),
                      ("affine, corrected readout", "V_rest_R2_corrected"))
                     if (key := (f"vs {control}", arm, levels, metric)) in by]
            lines.append(f"- {_levels(dict(levels))}, {v.n_pairs} seed pairs: V_rest_R2 (affine) {v.interval()} "
                         f"p = {v.sign_flip_p:.3g}" + (", " + ", ".join(extra) if extra else "")
                         + f"; conn_R2 (affine) {k.interval()}. V_rest_R2 **{raise_phrase(v)}**, conn_R2 "
                         f"**{'kept' if k.kept(KEEP_MARGIN) else 'not shown to be kept'}**.")
        if len(lines) == 1:
            lines.append(f"- not measured (needs the arms {arm} and {control} on shared seed pairs)")
        lines.append("")
    lines.append(f"**2. Which cell raises V_rest_R2 most over the gold standard ({block.baseline} at the first "
                 f"level of every axis)?**")
    for definition, readout in RANKINGS:
        ranked = lever_ranking(comparisons, definition, readout)
        if ranked.empty or "V_rest_difference" not in ranked:
            continue
        top = ranked.iloc[0]
        levels = {a.factor: top[a.factor] for a in block.axes if a.factor in top}
        costs = ", ".join(f"{name} {top[f'{short}_difference']:+.3f} [{top[f'{short}_t_low']:+.3f}, "
                          f"{top[f'{short}_t_high']:+.3f}]" for short, name in (("conn", "conn_R2"), ("tau", "tau_R2"))
                          if f"{short}_difference" in top and np.isfinite(top[f"{short}_difference"]))
        n_raised = int(ranked["V_rest_raised"].sum())
        verdict = (f"{n_raised} of {len(ranked)} cells raise V_rest_R2; the largest gain" if n_raised
                   else f"none of {len(ranked)} cells is shown to raise V_rest_R2; the best")
        lines.append(f"- {definition} R2, {readout} readout: {verdict} is **{top['arm']}"
                     + (f" at {_levels(levels)}" if levels else "") + f"**: V_rest_R2 {top['V_rest_difference']:+.3f} "
                     f"[{top['V_rest_t_low']:+.3f}, {top['V_rest_t_high']:+.3f}] on {int(top['n_pairs'])} pairs, "
                     f"p = {top['V_rest_sign_flip_p']:.3g}; at a cost of {costs or 'n/a'} (same definition).")
    if lines[-1].startswith("**2."):
        lines.append(f"- not measured (needs {block.baseline} at the first levels and another cell on shared pairs)")
    lines += ["", f"Rules: V_rest_R2 is raised when {RAISE_RULE}; conn_R2 is kept when {KEEP_RULE}. Compare "
                  f"budgets before methods: every arm's epochs are in its config."]
    return "\n".join(lines)


def headline(comparisons: list[PairedComparison]) -> str:
    """One line for the study index: the focus comparison (V_rest_R2, conn_R2; affine) at each
    level, and the best cell's V_rest_R2 change against the gold standard at each axis's first
    level (both cells named: ``two_stage_constant_schedule at budget 3`` against ``gold_standard
    at budget 1``)."""
    if not comparisons:
        return "no paired runs yet"
    block = block_definition(comparisons[0].block)
    parts = []
    if block.focus:
        arm, control = block.focus
        parts = [f"{c.metric} {c.interval()} at {_levels(c.levels)}" for c in comparisons
                 if c.kind == f"vs {control}" and c.arm == arm and c.n_pairs > 0
                 and c.metric in ("V_rest_R2", "connectivity_R2")]
        text = (f"{arm} - {control} (affine R2, mean paired difference [95 % t interval]): " + "; ".join(parts)
                if parts else f"{arm} vs {control}: not measured")
    else:
        text = ""
    ranked = lever_ranking(comparisons, "affine")
    if not ranked.empty and "V_rest_difference" in ranked:
        top = ranked.iloc[0]
        best = next(c for c in comparisons if c.kind == GOLD_STANDARD_KIND and c.arm == top["arm"]
                    and all(top[k] == v for k, v in c.levels.items()))
        cell = f"{top['arm']} at {_levels(best.levels)}" if best.levels else top["arm"]
        text += (f". Best V_rest_R2 change against {best.control or 'the gold standard'}: {cell}, "
                 f"{top['V_rest_difference']:+.3f} [{top['V_rest_t_low']:+.3f}, {top['V_rest_t_high']:+.3f}]"
                 f" on {int(top['n_pairs'])} pairs")
    return text.lstrip(". ")


def field_table(ds: xr.Dataset) -> pd.DataFrame:
    """Per cell (arm and axis levels), each parameter in the field's convention, means over runs:
    ``inliers [all] (% dropped)`` (identity R2 on the field's inliers, on all, share dropped),
    tau and V_rest under both readouts, and the seed's affine V_rest_R2 beside them."""
    names = factor_names(ds)
    df = runs_table(ds).drop(columns=names, errors="ignore").join(lever_factors(ds), on="config")
    rows = []
    for key, grp in df.groupby(names, sort=False):
        row = {**dict(zip(names, key)), "runs": len(grp)}
        for label, p, readout in FIELD_PARAMETERS:
            cols = [f"{p}_R2_field{readout}", f"{p}_R2_field_all{readout}", f"{p}_field_dropped{readout}"]
            if all(c in grp for c in cols) and grp[cols[0]].notna().any():
                inl, every, dropped = (grp[c].mean() for c in cols)
                row[label] = f"{inl:.3f} [{every:.3f}] ({100 * dropped:.1f} %)"
            else:
                row[label] = "n/a"
        for readout in ("", "_corrected"):
            col = f"V_rest_R2{readout}"
            row[f"V_rest affine{readout.replace('_', ' ')}"] = (f"{grp[col].mean():.3f}" if col in grp
                                                                and grp[col].notna().any() else "n/a")
        rows.append(row)
    return pd.DataFrame(rows).set_index(names)


def readout_table(ds: xr.Dataset) -> pd.DataFrame:
    """Per cell, the corrected readout's own effect on the same runs: V_rest_R2 corrected - plain
    (affine and field), mean with its 95 % t interval and exact sign-flip p over the runs."""
    names = factor_names(ds)
    df = runs_table(ds).drop(columns=names, errors="ignore").join(lever_factors(ds), on="config")
    rows = []
    for key, grp in df.groupby(names, sort=False):
        row = {**dict(zip(names, key))}
        for definition, suffix in (("affine", ""), ("field", "_field")):
            plain, corrected = f"V_rest_R2{suffix}", f"V_rest_R2{suffix}_corrected"
            if corrected not in grp:
                continue
            d = (grp[corrected] - grp[plain]).to_numpy(dtype=float)
            d = d[np.isfinite(d)]
            lo, hi = t_interval(d)
            row.update({f"{definition}_runs": d.size, f"{definition}_difference": d.mean() if d.size else np.nan,
                        f"{definition}_t_low": lo, f"{definition}_t_high": hi,
                        f"{definition}_sign_flip_p": sign_flip_p(d)})
        rows.append(row)
    return pd.DataFrame(rows).set_index(names).round(4)


def _title(c: PairedComparison) -> str:
    return f"{c.arm} ({_levels(c.levels)})"


def paired_lines_figure(comparisons: list[PairedComparison], kind: str,
                        metrics=("V_rest_R2", "V_rest_R2_corrected", "connectivity_R2")) -> plt.Figure | None:
    """One line per seed pair from the control to the arm (``report.figures.paired_figure``) for
    the comparisons of one kind, with their forest plot."""
    return paired_figure([c for c in comparisons if c.kind == kind and c.metric in metrics], title_of=_title)


def forest_figure(comparisons: list[PairedComparison], kinds: tuple[str, ...] | None = None,
                  metrics=LEVER_METRICS) -> plt.Figure | None:
    """Paired differences with 95 % t intervals: one panel per metric (every R2 definition and
    readout), one row per comparison (arm, levels, kind)."""
    if not comparisons:
        return None
    block = block_definition(comparisons[0].block)
    kinds = kinds or (*(f"vs {c}" for c in block.controls), *(a.factor for a in block.axes))
    arms = list(block.arms)
    rows = sorted((c for c in comparisons if c.kind in kinds and c.n_pairs > 0),
                  key=lambda c: (kinds.index(c.kind), arms.index(c.arm) if c.arm in arms else len(arms),
                                 tuple(c.levels.values())))
    metrics = [m for m in metrics if any(c.metric == m for c in rows)]
    if not rows or not metrics:
        return None
    label = lambda c: f"{_title(c)} ({c.kind})"  # noqa: E731
    labels = list(dict.fromkeys(label(c) for c in rows))
    ncol = 2
    nrow = int(np.ceil(len(metrics) / ncol))
    row_height = 0.3 * len(labels) + 0.9  # inches: the labels, plus a title and an axis label per panel row
    fig, axes = plt.subplots(nrow, ncol, figsize=(12, row_height * nrow + 0.6), squeeze=False, sharey=True)
    y = {lab: i for i, lab in enumerate(labels[::-1])}
    colours = {k: f"C{i}" for i, k in enumerate(kinds)}
    for ax, m in zip(axes.ravel(), metrics):
        for c in rows:
            if c.metric != m:
                continue
            yy = y[label(c)]
            if np.isfinite(c.t_low) and np.isfinite(c.t_high):
                ax.plot((c.t_low, c.t_high), (yy, yy), color=colours[c.kind], lw=2)
            ax.plot(c.mean_difference, yy, "o", color=colours[c.kind], ms=4)
        ax.axvline(0, color="k", lw=0.8)
        ax.set_title(m, fontsize=9)
        ax.set_xlabel("paired difference, arm - control (95 % t interval)", fontsize=8)
        ax.set_yticks(list(y.values()), list(y.keys()), fontsize=7)
    for ax in axes.ravel()[len(metrics):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def type_error_figure(ds: xr.Dataset, out_dir: str | Path) -> plt.Figure | None:
    """Signed V_rest error per cell type (``study.type_errors``), one panel per readout: per arm at
    the first level of every axis, the mean over its runs (dots) and the per-run spread (bars,
    min to max); types ordered by the gold standard's plain error."""
    errors = type_errors(ds, out_dir)
    if errors.empty:
        return None
    block = block_of(ds)
    factors = lever_factors(ds)
    first = {a.factor: float(a.default[0]) for a in block.axes}
    keep = factors[np.all([factors[f] == v for f, v in first.items()], axis=0)] if first else factors
    errors = errors[errors["config"].isin(keep.index)]
    readouts = list(dict.fromkeys(errors["readout"]))
    arms = [a for a in block.arms if a in set(errors["arm"])]
    base = errors[(errors["arm"] == (block.baseline if block.baseline in arms else arms[0]))
                  & (errors["readout"] == "plain")]
    order = base.groupby("cell_type")["signed_error"].mean().sort_values().index.tolist()
    order += sorted(set(errors["cell_type"]) - set(order))
    x = {t: i for i, t in enumerate(order)}
    fig, axes = plt.subplots(len(readouts), 1, figsize=(max(10, 0.16 * len(order)), 3.2 * len(readouts)),
                             squeeze=False, sharex=True, sharey=True)
    width = 0.8 / max(len(arms), 1)
    for ax, readout in zip(axes[:, 0], readouts):
        for i, arm in enumerate(arms):
            sub = errors[(errors["arm"] == arm) & (errors["readout"] == readout)]
            g = sub.groupby("cell_type")["signed_error"]
            xs = np.array([x[t] for t in g.mean().index]) + (i - (len(arms) - 1) / 2) * width
            ax.vlines(xs, g.min().values, g.max().values, color=f"C{i}", lw=0.8, alpha=0.5)
            ax.plot(xs, g.mean().values, "o", ms=2.5, color=f"C{i}", label=f"{arm} ({sub['run_id'].nunique()} runs)")
        ax.axhline(0, color="k", lw=0.8)
        ax.set_ylabel("V_rest_hat - V_rest\n(mean over the type)", fontsize=8)
        ax.set_title(f"{readout} readout" + (f" ({_levels(first)})" if first else ""), fontsize=9)
        ax.legend(fontsize=7, ncol=3, loc="best")
    axes[-1, 0].set_xticks(range(len(order)), order, rotation=90, fontsize=6)
    fig.tight_layout()
    return fig


def vrest_trajectory_figure(ds: xr.Dataset, metric: str = "traj_vrest") -> plt.Figure | None:
    """In-loop V_rest_R2 (affine, plain readout; ``traj_conn`` for conn_R2) over training, one
    panel per combination of axis levels, one colour per arm: the mean over seed pairs (thick)
    and each run (thin). Shaded: two-stage's V_rest-focus phases (orange); dotted: epoch boundaries."""
    if "step" not in ds.dims:
        return None
    factors = lever_factors(ds)
    axes_names = factor_names(ds)[1:]
    panels = sorted(set(map(tuple, factors[axes_names].to_numpy().tolist()))) if axes_names else [()]
    block_arms = list(block_of(ds).arms)
    arms = [a for a in block_arms if a in set(factors["arm"])] + sorted(set(factors["arm"]) - set(block_arms))
    colours = {a: f"C{i}" for i, a in enumerate(arms)}
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False, sharey=True)
    steps = ds["step"].values
    for ax, levels in zip(axes[0], panels):
        shaded = False
        for arm in arms:
            for config, f in factors[factors["arm"] == arm].iterrows():
                if tuple(f[axes_names]) != levels:
                    continue
                sub = ds.sel(config=config).stack(run=("ground_truth", "sim_seed", "train_seed"))
                runs = sub[metric].dropna("run", how="all")
                if not runs.sizes.get("run", 0):
                    continue
                for r in range(runs.sizes["run"]):
                    y = runs.isel(run=r).values
                    ok = np.isfinite(y)
                    ax.plot(steps[ok], y[ok], color=colours[arm], lw=0.5, alpha=0.3)
                mean = runs.mean("run", skipna=True).values
                ok = np.isfinite(mean)
                ax.plot(steps[ok], mean[ok], color=colours[arm], lw=2, label=arm)
                phase = sub["traj_phase"].dropna("run", how="all")
                if arm.startswith("two_stage") and not shaded and phase.sizes.get("run", 0):
                    ph = phase.isel(run=0).values
                    good = np.isfinite(ph)
                    for s0, s1, p in zip(steps[good][:-1], steps[good][1:], ph[good][:-1]):
                        if p > 0.5:
                            ax.axvspan(s0, s1, color=PHASE_COLOURS["V_rest"], lw=0, zorder=0)
                    shaded = True
                per_epoch = float(sub["n_iterations_per_epoch"].max())
                epochs = np.nanmax(sub["n_epochs"].values) if np.isfinite(sub["n_epochs"]).any() else 1
                if np.isfinite(per_epoch):
                    for e in range(1, int(epochs)):
                        ax.axvline(e * per_epoch, color="0.4", ls=":", lw=1)
        ax.set(title=_levels(dict(zip(axes_names, levels))) or "all runs", xlabel="iteration")
        ax.legend(fontsize=7, loc="best")
    name = "V_rest_R2" if metric == "traj_vrest" else metric.replace("traj_", "") + "_R2"
    axes[0][0].set_ylabel(f"{name} in the loop (affine R2)")
    fig.tight_layout()
    return fig


def sections(ds: xr.Dataset) -> tuple[str, ...]:
    block = block_of(ds)
    controls = " and ".join(block.controls)
    axes = ", ".join(a.factor for a in block.axes)
    return ("Answers",
            "Each cell in the field convention: inliers [all] (% dropped), both readouts",
            "Effect of the corrected readout on the same runs (corrected - plain V_rest_R2)",
            "Cells: means and 95 % t intervals (every R2 definition and readout)",
            f"Paired comparisons against {controls}" + (f", and the effect of {axes}" if axes else ""),
            "Forest plot: paired differences with 95 % t intervals per cell and metric",
            *(f"Paired plot: every arm against {c}" for c in block.controls),
            "Cells ranked by the V_rest_R2 gain over the gold standard (per R2 definition and readout)",
            "Signed V_rest error per cell type (both readouts)",
            "At the start of epoch 2: conn_R2 and V_rest_R2 (in-loop, affine)",
            "V_rest_R2 during training (in-loop, affine; orange: two-stage's V_rest-focus phases)",
            "conn_R2 during training (in-loop, affine)")


def show_report(ds: xr.Dataset, comparisons: list[PairedComparison] | None = None,
                out_dir: str | Path | None = None) -> list[PairedComparison]:
    """Display every section of the block's report in order (in a notebook); returns the
    comparisons. ``out_dir``: the results folder (its runs' recovered values give the per-type
    errors)."""
    comparisons = lever_comparisons(ds) if comparisons is None else comparisons
    block = block_of(ds)

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
    index = ["kind", *factor_names(ds), "metric"]
    parts = [lambda: display(Markdown(answers(comparisons))),
             lambda: table(field_table(ds)),
             lambda: table(readout_table(ds)),
             lambda: table(lever_table(ds).round(4)),
             lambda: table(frame[frame["kind"] != GOLD_STANDARD_KIND].set_index(index).round(4)
                           if not frame.empty else "no paired comparisons"),
             lambda: figure(forest_figure(comparisons)),
             *((lambda c=c: figure(paired_lines_figure(comparisons, f"vs {c}"))) for c in block.controls),
             lambda: [table(lever_ranking(comparisons, d, r).round(4)) for d, r in RANKINGS],
             lambda: figure(type_error_figure(ds, out_dir) if out_dir is not None else None),
             lambda: table(epoch_boundary_table(ds).round(4)),
             lambda: figure(vrest_trajectory_figure(ds)),
             lambda: figure(vrest_trajectory_figure(ds, "traj_conn"))]
    for title, show in zip(sections(ds), parts):
        display(Markdown(f"### {title}"))
        show()
    return comparisons
