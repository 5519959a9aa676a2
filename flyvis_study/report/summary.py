"""The study summary: every block compared with the standard-training baseline, and the answers.

A block without controls of its own (``BlockDefinition.self_controlled`` false) is compared
with the baseline block (``study.blocks.BASELINE_BLOCK``: standard training, 1 epoch). A block
with its own controls (blocks 6 and 7: ``study.levers``, every arm against its controls at equal
axis levels, each axis's effect, and every cell against the gold standard) is summarised by its
own answers (``report.levers.answers``) instead.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import xarray as xr

from flyvis_study.report.verdicts import study_answer
from flyvis_study.resources import project_path
from flyvis_study.study.blocks import BASELINE_BLOCK, block_definition
from flyvis_study.study.comparison import PairedComparison, compare_with_baseline
from flyvis_study.study.levers import lever_comparisons as levers_of
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
    from flyvis_study.report.figures import paired_figure

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


def lever_comparisons(blocks: dict[int, xr.Dataset]) -> list[PairedComparison]:
    """The paired comparisons of the blocks with their own controls (``study.levers.lever_comparisons``,
    each with its ``block``); empty without such a block."""
    return [c for number, ds in blocks.items() if self_controlled(number) for c in levers_of(ds)]


def lever_answers(comparisons: list[PairedComparison]) -> str:
    """The answers of each block with its own controls (``report.levers.answers``), or why there are none."""
    from flyvis_study.report.levers import answers

    if not comparisons:
        return ("No block with its own controls (block 6, V_rest levers; block 7, what limits V_rest) in this "
                "folder: run `flyvis-study block 6` or `flyvis-study block 7`.")
    blocks = list(dict.fromkeys(c.block for c in comparisons))
    return "\n\n".join(f"#### Block {b}\n\n" + answers([c for c in comparisons if c.block == b]) for b in blocks)


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
