"""The study summary: every block compared with the standard-training baseline, and the answers.

A block without controls of its own (``BlockDefinition.self_controlled`` false) is compared
with the baseline block (``study.blocks.BASELINE_BLOCK``: standard training, 1 epoch). A block
with its own controls (blocks 6 and 7: ``study.levers``, every arm against its controls at equal
axis levels, each axis's effect, and every cell against the gold standard) is summarised by its
own answers (``report.levers.answers``) instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import xarray as xr

from flyvis_study.report.figures import paired_figure
from flyvis_study.report.levers import answers
from flyvis_study.report.verdicts import outcome_caveat, preset_statement, raise_phrase, study_answer
from flyvis_study.resources import project_path
from flyvis_study.study.blocks import BASELINE_BLOCK, block_definition
from flyvis_study.study.comparison import CLAIM_MIN_PAIRS, PairedComparison, compare_with_baseline, t_interval
from flyvis_study.study.levers import GOLD_STANDARD_KIND
from flyvis_study.study.levers import lever_comparisons as levers_of
from flyvis_study.study.results import runs_table
from flyvis_study.study.schema import load_block
from flyvis_study.study.statistics import config_statistics

SUMMARY_METRICS = ("V_rest_R2", "connectivity_R2", "tau_R2")


def self_controlled(number: int) -> bool:
    """True if block ``number`` is compared within itself, not with the baseline block."""
    return block_definition(number).self_controlled


def load_blocks(reports_dir: str | Path) -> dict[int, xr.Dataset]:
    """{block number: block Dataset} of every ``blockN.nc`` in the folder."""
    folder = project_path(reports_dir)
    return {int(p.stem[5:]): load_block(p) for p in sorted(folder.glob("block[0-9].nc"))}


def study_comparisons(blocks: dict[int, xr.Dataset], baseline_block: int = BASELINE_BLOCK) -> list[PairedComparison]:
    """Paired comparisons (V_rest_R2, conn_R2, tau_R2) of every config of every other block with the baseline."""
    if baseline_block not in blocks:
        return []
    out = []
    for number, ds in blocks.items():
        if number == baseline_block or self_controlled(number):
            continue
        for c in compare_with_baseline(blocks[baseline_block], ds, list(config_statistics(ds).index),
                                       SUMMARY_METRICS):
            out.append(c.within(block=number))
    return out


def figure(comparisons: list[PairedComparison]):
    """Paired lines per seed pair and the forest plot of every block's configs against the baseline."""
    return paired_figure(comparisons, title_of=lambda c: f"{c.treatment_config} (block {c.block})")


def provenance_table(blocks: dict[int, xr.Dataset]) -> str:
    if not blocks:
        return "No block files found."
    lines = ["| block | title | runs | made by | commit | device |", "|---|---|---|---|---|---|"]
    for number, ds in blocks.items():
        a = ds.attrs
        n_runs = int((ds["run_id"] != "").sum())
        lines.append(f"| {number} | {a.get('title', '')} | {n_runs} | flyvis_study {a.get('package_version', '?')}, "
                     f"torch {a.get('torch_version', '?')} | `{a.get('git_commit') or 'n/a'}` | "
                     f"{a.get('device_name', '?')} |")
    return "\n".join(lines)


def answer(comparisons: list[PairedComparison]) -> str:
    return study_answer(comparisons)


def scope(blocks: dict[int, xr.Dataset]) -> list[str]:
    """What the results can say, for the top of the summary and the index: the preset statement,
    then one caution per block whose runs did not converge."""
    lines = [preset_statement([str(ds.attrs.get("preset", "")) for ds in blocks.values()])] if blocks else []
    for number, ds in blocks.items():
        caveat = outcome_caveat(runs_table(ds))
        if caveat:
            lines.append(f"**Block {number}. {caveat}**")
    return lines


def lever_comparisons(blocks: dict[int, xr.Dataset]) -> list[PairedComparison]:
    """The paired comparisons of the blocks with their own controls (``study.levers.lever_comparisons``,
    each with its ``block``); empty without such a block."""
    return [c for number, ds in blocks.items() if self_controlled(number) for c in levers_of(ds)]


def lever_answers(comparisons: list[PairedComparison]) -> str:
    """The answers of each block with its own controls (``report.levers.answers``), or why there are none."""
    if not comparisons:
        return ("No block with its own controls (block 6, V_rest levers; block 7, what limits V_rest; block 8, "
                "the budget ladder) in this folder: run `flyvis-study block 6`, `7` or `8`.")
    blocks = list(dict.fromkeys(c.block for c in comparisons))
    return "\n\n".join(f"#### Block {b}\n\n" + answers([c for c in comparisons if c.block == b]) for b in blocks)


def _along_axes(block, comparisons: list[PairedComparison], first: dict) -> list[str]:
    """One line per arm and axis: V_rest_R2 at each other level of the axis against the same arm
    at its first level, on the same pairs (block 8's budget ladder; block 7's blank fraction):
    the level's mean, the first level's mean and the paired difference with its t interval,
    affine with the plain readout and in the field's convention with the corrected one."""

    def step(c: PairedComparison, factor: str) -> str:
        f = next((f for f in comparisons if (f.kind, f.arm, f.levels, f.metric)
                  == (c.kind, c.arm, c.levels, "V_rest_R2_field_corrected") and f.n_pairs), None)
        text = (f"{factor} {c.levels[factor]:g}: V_rest_R2 {c.mean_treatment:.3f} vs {c.mean_baseline:.3f}, "
                f"{c.interval()} (affine, plain)")
        if f is not None:
            text += (f"; {f.mean_treatment:.3f} vs {f.mean_baseline:.3f}, {f.interval()} (field, corrected"
                     + (f", {f.n_pairs} pairs with it" if f.n_pairs != c.n_pairs else "") + ")")
        return text + f", {c.n_pairs} pairs"

    lines = []
    for axis in block.axes:
        for arm in block.arms:
            steps = [c for c in comparisons if (c.kind, c.arm, c.metric) == (axis.factor, arm, "V_rest_R2")
                     and c.n_pairs > 0]
            if steps:
                lines.append(f"- {arm} along {axis.factor}, against {axis.factor} {first[axis.factor]:g} on the "
                             f"same pairs: " + "; ".join(step(c, axis.factor) for c in steps) + ".")
    return lines


def vrest_limits(blocks: dict[int, xr.Dataset], comparisons: list[PairedComparison]) -> str:
    """The summary's first lines: what limits V_rest here, from each block with its own controls
    (newest first): every cell against the gold standard, V_rest_R2 under the seed's definition
    with the plain readout and under the field's convention with the corrected one, conn_R2 beside
    it; the corrected readout's own effect on the gold standard's runs; then the caveats (preset,
    network size, ground truth, pairs, training target)."""
    numbers = sorted((n for n in blocks if self_controlled(n)), reverse=True)
    if not numbers:
        return ("**What limits V_rest here:** not measured yet (run `flyvis-study block 7`, what limits V_rest, "
                "block 8, the budget ladder, or block 6, the V_rest levers).")
    lines = []
    for number in numbers:
        ds, block = blocks[number], block_definition(number)
        own = [c for c in comparisons if c.block == number and c.kind == GOLD_STANDARD_KIND]
        first = {a.factor: float(a.default[0]) for a in block.axes}
        own = [c for c in own if all(c.levels.get(f) == v for f, v in first.items())]
        by = {(c.arm, c.metric): c for c in own if c.n_pairs > 0}
        lines.append(f"**What limits V_rest here (block {number}, against {block.baseline}"
                     + (", " + ", ".join(f"{f} {v:g}" for f, v in first.items()) if first else "") + "):**")
        for arm in block.arms:
            v, f, k = (by.get((arm, m)) for m in ("V_rest_R2", "V_rest_R2_field_corrected", "connectivity_R2"))
            if v is None:
                continue
            lines.append(f"- {arm}: V_rest_R2 {v.interval()} (affine, plain readout; {raise_phrase(v)})"
                         + (f", {f.interval()} (field, corrected readout"
                            + (f", {f.n_pairs} pairs with it" if f.n_pairs != v.n_pairs else "") + ")"
                            if f is not None else "")
                         + (f"; conn_R2 {k.interval()}" if k is not None else "") + f"; {v.n_pairs} pairs.")
        lines += _along_axes(block, [c for c in comparisons if c.block == number], first)
        runs = runs_table(ds)
        gold = runs[runs["arm"] == block.baseline] if "arm" in runs else runs.iloc[0:0]
        if len(gold) and "V_rest_R2_corrected" in gold:
            d = (gold["V_rest_R2_corrected"] - gold["V_rest_R2"]).dropna().to_numpy(dtype=float)
            if d.size:
                lo, hi = t_interval(d)
                lines.append(f"- The corrected readout on {block.baseline}'s own {d.size} runs: V_rest_R2 "
                             f"{d.mean():+.3f} [{lo:+.3f}, {hi:+.3f}] over the plain readout (affine).")
        configs = [json.loads(c) for c in runs["config_json"]] if len(runs) else []
        extents = sorted({c["simulation"]["extent"] for c in configs})
        truths = sorted(set(runs["ground_truth"])) if len(runs) else []
        targets = sorted({c["training"].get("derivative_target", "clean") for c in configs})
        pairs = len({(g, s, t) for g, s, t in zip(runs["ground_truth"], runs["sim_seed"], runs["train_seed"])})
        lines.append(f"- Caveats: preset `{ds.attrs.get('preset', '?')}`, extent {', '.join(map(str, extents))} "
                     f"(not the full optic lobe at extent 8), ground truth {', '.join(truths)}, {pairs} seed pairs "
                     f"in all, training targets {', '.join(targets)} (clean = the simulator's derivative, a "
                     f"privileged target); a claim needs {CLAIM_MIN_PAIRS} pairs and the t interval above 0.")
        lines.append("")
    return "\n".join(lines).rstrip()


def block_table(blocks: dict[int, xr.Dataset]) -> pd.DataFrame:
    """One row per (block, config): runs, means and CVs of the headline metrics, flags."""
    rows = []
    for number, ds in blocks.items():
        for cfg, r in config_statistics(ds).iterrows():
            rows.append({"block": number, "config": cfg, "runs": r["n_runs"], "conn_R2": r["connectivity_R2_mean"],
                         "conn_CV": r["connectivity_R2_cv"], "V_rest_R2": r["V_rest_R2_mean"],
                         "V_rest_CV": r["V_rest_R2_cv"], "tau_R2": r["tau_R2_mean"],
                         "cluster_accuracy": r["cluster_accuracy_mean"], "robust": r["robust"],
                         "fragile": r["fragile"]})
    return pd.DataFrame(rows).round(4)


def comparison_table(comparisons: list[PairedComparison]) -> pd.DataFrame | str:
    if not comparisons:
        return "need the baseline block and at least one other block"
    cols = ["block", "treatment_config", "metric", "n_pairs", "mean_baseline", "mean_treatment", "mean_difference",
            "t_low", "t_high", "ci95_low", "ci95_high", "sign_flip_p", "effect_size_dz", "wilcoxon_p"]
    return pd.DataFrame([c.row() for c in comparisons])[cols].round(4)
