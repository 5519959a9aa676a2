"""What a block notebook shows, as functions: header, verdict, figures, tables, configuration.

The block notebooks (``notebooks/blockN.ipynb``) call these in order, so a notebook holds
its parameters, its prose and one call per section, and every rule lives here, tested.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd
import yaml

from flyvis_study.report.figures import distribution_figure, embedding_figure, paired_figure, trajectory_figure
from flyvis_study.report.verdicts import block_verdict
from flyvis_study.resources import project_path
from flyvis_study.study.blocks import BASELINE_BLOCK, BlockResult
from flyvis_study.study.comparison import COMPARED_METRICS, compare_with_baseline
from flyvis_study.study.schema import load_block
from flyvis_study.study.statistics import flag_reasons
from flyvis_study.study.statistics import variance_table as _variance_table

__all__ = ["baseline_comparisons", "header", "verdict", "distribution_figure", "trajectory_figure",
           "embedding_figure", "paired_figure", "variance_table", "ranking_table", "comparison_table",
           "resolved_configuration", "show_report"]

COMPARISON_COLUMNS = ["treatment_config", "metric", "n_pairs", "mean_baseline", "mean_treatment", "mean_difference",
                      "ci95_low", "ci95_high", "effect_size_dz", "wilcoxon_p", "ttest_p"]


def baseline_path(result: BlockResult) -> Path | None:
    """The baseline block file: ``compare_with``, else the baseline block's file (``BASELINE_BLOCK``)
    beside this block (not for the baseline block itself)."""
    if result.parameters.compare_with:
        return project_path(result.parameters.compare_with)
    default = result.out_dir / f"block{BASELINE_BLOCK}.nc"
    return default if result.block != BASELINE_BLOCK and default.is_file() else None


def baseline_comparisons(result: BlockResult, metrics=COMPARED_METRICS) -> list[dict]:
    """Paired comparisons of every config of the block with the baseline (empty without one)."""
    path = baseline_path(result)
    if path is None:
        return []
    return compare_with_baseline(load_block(path), result.dataset, list(result.statistics.index), metrics)


def header(result: BlockResult) -> str:
    """Markdown: preset, runs, seed pairs and provenance of the block file."""
    a = result.dataset.attrs
    pairs = sorted({(s.sim_seed, s.train_seed) for s in result.specs})
    networks = list(dict.fromkeys(s.ground_truth for s in result.specs))
    return (f"Preset `{result.parameters.preset}`, {len(result.specs)} runs over {len(result.statistics)} "
            f"config(s) and {len(pairs)} seed pair(s) (sim_seed, train_seed): "
            + ", ".join(f"({s}, {t})" for s, t in pairs) + "; ground truth: " + ", ".join(networks) + ".  \n"
            f"Made by flyvis_study {a.get('package_version', '?')} (commit `{a.get('git_commit') or 'n/a'}`), "
            f"torch {a.get('torch_version', '?')}, on {a.get('device_name', '?')}. "
            f"Block file: `{result.nc_path}`.")


def verdict(result: BlockResult, comparisons: list[dict]) -> str:
    return block_verdict(result.statistics, result.ranking, comparisons, result.parameters.preset)


def variance_table(stats: pd.DataFrame) -> pd.DataFrame:
    return _variance_table(stats).round(4)


def ranking_table(ranked: pd.DataFrame) -> pd.DataFrame | str:
    return ranked.round(4) if len(ranked) else "no config has >= 3 runs yet (ranking needs 3)"


def comparison_table(comparisons: list[dict]) -> pd.DataFrame | str:
    """Rows (config, metric): means, paired difference, its CI, d_z and p-values."""
    if not comparisons:
        return "no baseline block (parameter compare_with, or block0.nc in out_dir)"
    table = pd.DataFrame(comparisons)[COMPARISON_COLUMNS].set_index(["treatment_config", "metric"])
    return table.round(4)


def resolved_configuration(result: BlockResult) -> str:
    """YAML of the first run's resolved config, and the seed pairs of all runs."""
    spec = result.specs[0]
    text = yaml.safe_dump(spec.config.model_dump(mode="json"), sort_keys=False)
    seeds = sorted({(s.sim_seed, s.train_seed, s.seed_mode) for s in result.specs})
    return text + "\nseed pairs (sim_seed, train_seed, mode): " + ", ".join(map(str, seeds))


def collapsed(summary: str, text: str) -> str:
    """HTML ``<details>`` holding ``text`` preformatted, closed until clicked."""
    return f"<details><summary>{html.escape(summary)}</summary><pre>{html.escape(text)}</pre></details>"


SECTIONS = ("Verdict", "Key figure", "Statistics per config and metric", "Ranking (configs with >= 3 runs)",
            "Paired comparison with the standard-training baseline",
            "Metric distributions per config (one dot per run)",
            "R2 trajectories (blue band: joint phase; orange band: V_rest-focus phase)",
            "Embeddings of representative runs (the run nearest the median conn_R2 of each config)",
            "Resolved configuration")


def show_report(result: BlockResult, comparisons: list[dict]) -> None:
    """Display every section of a block report in order, each under its heading (in a notebook).

    Verdict and key figure first; tables whole (no column or row elision); the other figures;
    the resolved configuration collapsed at the end.
    """
    import matplotlib.pyplot as plt
    from IPython.display import HTML, Markdown, display

    def figure(fig):
        if fig is not None:
            display(fig)
            plt.close(fig)

    def table(value):
        with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", None):
            display(value)

    key = paired_figure(comparisons)
    caption = ("Per seed pair, each metric under the baseline and under this block's configs (red: lower under "
               "the treatment), and the mean paired differences with 95 % bootstrap CIs."
               if key is not None else "Each metric per config, one dot per run.")
    parts = [lambda: display(Markdown(verdict(result, comparisons))),
             lambda: (figure(key if key is not None else distribution_figure(result.dataset)),
                      display(Markdown(caption))),
             lambda: (table(variance_table(result.statistics)),
                      display(Markdown("\n".join(f"- **{cfg}**: {flag_reasons(row)}"
                                                  for cfg, row in result.statistics.iterrows())))),
             lambda: table(ranking_table(result.ranking)),
             lambda: table(comparison_table(comparisons)),
             lambda: figure(distribution_figure(result.dataset) if key is not None else None),
             lambda: figure(trajectory_figure(result.dataset)),
             lambda: figure(embedding_figure(result.dataset, result.out_dir)),
             lambda: display(HTML(collapsed("first run's configuration, resolved (seeds differ per run); click "
                                            "to open", resolved_configuration(result))))]
    for title, show in zip(SECTIONS, parts):
        if title.startswith("Metric distributions") and key is None:
            continue  # already the key figure
        display(Markdown(f"### {title}"))
        show()
