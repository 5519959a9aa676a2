"""What a block notebook shows, as functions: parameters, header, verdict, figures, tables, configuration.

The block notebooks (``notebooks/blockN.ipynb``, generated from one source by
``tools/block_notebooks.py``) call these in order: ``show_parameters`` (the resolved
parameters, ``parameter_table``, first), ``header``, ``show_block_report`` (a block with its own controls shows
``report.levers``' report, the others the comparison with the baseline block) and
``how_to_read``, whose rules and numbers are read from the constants that apply them.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import pandas as pd
import yaml
from IPython import get_ipython
from IPython.display import HTML, Markdown, display

from flyvis_study.evaluation.names import R2_DEFINITIONS
from flyvis_study.evaluation.recovery import W_OUTLIER
from flyvis_study.report import levers
from flyvis_study.report.figures import distribution_figure, embedding_figure, paired_figure, trajectory_figure
from flyvis_study.report.verdicts import KEEP_RULE, RAISE_RULE, block_verdict, outcome_caveat, repairs_note
from flyvis_study.resources import project_path
from flyvis_study.study.blocks import BASELINE_BLOCK, block_definition, block_parameters, check_input_files, plan_block
from flyvis_study.study.comparison import CLAIM_MIN_PAIRS, COMPARED_METRICS, PairedComparison, compare_with_baseline
from flyvis_study.study.parameters import BlockParameterError, BlockParameters
from flyvis_study.study.schema import load_block
from flyvis_study.study.statistics import (
    FRAGILE_CV,
    FRAGILE_MIN_FRACTION,
    RANK_MIN_RUNS,
    RANK_V_REST_WEIGHT,
    ROBUST_RULES,
    flag_reasons,
)
from flyvis_study.study.statistics import variance_table as _variance_table

if TYPE_CHECKING:  # the block a report shows: what run_block and open_block return
    from flyvis_study.access import Block

__all__ = ["baseline_comparisons", "header", "verdict", "distribution_figure", "trajectory_figure",
           "embedding_figure", "paired_figure", "variance_table", "ranking_table", "comparison_table",
           "resolved_configuration", "show_report"]

COMPARISON_COLUMNS = ["treatment_config", "metric", "n_pairs", "mean_baseline", "mean_treatment", "mean_difference",
                      "t_low", "t_high", "ci95_low", "ci95_high", "sign_flip_p", "effect_size_dz", "wilcoxon_p",
                      "ttest_p"]
LEVER_DISTRIBUTION_METRICS = ("V_rest_R2", "V_rest_R2_corrected", "V_rest_R2_field", "V_rest_R2_field_corrected",
                              "connectivity_R2", "tau_R2")


def baseline_path(result: Block) -> Path | None:
    """The baseline block file: ``compare_with``, else the baseline block's file (``BASELINE_BLOCK``)
    beside this block (not for the baseline block itself)."""
    if result.parameters.compare_with:
        return project_path(result.parameters.compare_with)
    default = result.folder / f"block{BASELINE_BLOCK}.nc"
    return default if result.number != BASELINE_BLOCK and default.is_file() else None


def baseline_comparisons(result: Block, metrics=COMPARED_METRICS) -> list[PairedComparison]:
    """Paired comparisons of every config of the block with the baseline (empty without one)."""
    path = baseline_path(result)
    if path is None:
        return []
    return compare_with_baseline(load_block(path), result.ds, list(result.statistics.index), metrics)


def parameter_table(number: int, params: BlockParameters) -> pd.DataFrame:
    """The block's resolved parameters: one row each, its value, whether it is the default, and
    what it means (the parameter's description)."""
    model = block_definition(number).parameters
    defaults = model().model_dump(mode="json")
    rows = []
    for name, value in params.model_dump(mode="json").items():
        text = json.dumps(value) if isinstance(value, (list, dict)) or value is None else str(value)
        rows.append({"parameter": name, "value": text, "default": "yes" if value == defaults[name] else "no",
                     "meaning": model.model_fields[name].description or ""})
    return pd.DataFrame(rows).set_index("parameter")


IPYTHON_NAMES = ("In", "Out", "exit", "get_ipython", "open", "quit")  # a kernel's own names, not parameters


def notebook_parameters(number: int, given: list[str], namespace: dict) -> BlockParameters:
    """The validated parameters of block ``number`` from a notebook's ``namespace``; ``given``:
    the names defined before the notebook's first code cell (its parameters cell and whatever
    papermill injected). A name that is not one of the block's parameters (a misspelt ``-p``),
    a bad value or a value no run config accepts raises ``BlockParameterError``, shown as its one line (the kernel's
    traceback mode is Minimal until the parameters are valid)."""
    shell = get_ipython()
    if shell is not None:
        shell.InteractiveTB.set_mode("Minimal")
    fields = block_definition(number).parameters.model_fields
    unknown = [name for name in given if name not in fields and name not in IPYTHON_NAMES]
    if unknown:
        raise BlockParameterError(f"block {number}: unknown parameter {', '.join(map(repr, unknown))}; allowed: "
                                  + ", ".join(fields))
    params = block_parameters(number, **{name: namespace[name] for name in fields})
    check_input_files(plan_block(number, params))  # every run's config and input files too, before anything runs
    if shell is not None:
        shell.InteractiveTB.set_mode("Context")
    return params


def show_parameters(number: int, params: BlockParameters) -> None:
    """Display the resolved parameters (``parameter_table``) under a heading, every column whole."""
    display(Markdown("### Parameters (resolved)"))
    with pd.option_context("display.max_rows", None, "display.max_colwidth", None, "display.width", None):
        display(parameter_table(number, params))


def header(result: Block) -> str:
    """Markdown: preset, runs, seed pairs and provenance of the block file."""
    a = result.ds.attrs
    pairs = sorted({(s.sim_seed, s.train_seed) for s in result.specs})
    networks = list(dict.fromkeys(s.ground_truth for s in result.specs))
    return (f"Preset `{result.parameters.preset}`, {len(result.specs)} runs over {len(result.statistics)} "
            f"config(s) and {len(pairs)} seed pair(s) (sim_seed, train_seed): "
            + ", ".join(f"({s}, {t})" for s, t in pairs) + "; ground truth: " + ", ".join(networks) + ".  \n"
            f"Made by flyvis_study {a.get('package_version', '?')} (commit `{a.get('git_commit') or 'n/a'}`), "
            f"torch {a.get('torch_version', '?')}, on {a.get('device_name', '?')}. "
            f"Block file: `{result.path}`.")


def verdict(result: Block, comparisons: list[PairedComparison]) -> str:
    return block_verdict(result.statistics, result.ranking, comparisons, result.parameters.preset,
                         caveat=outcome_caveat(result.runs))


def variance_table(stats: pd.DataFrame) -> pd.DataFrame:
    return _variance_table(stats).round(4)


def ranking_table(ranked: pd.DataFrame) -> pd.DataFrame | str:
    return ranked.round(4) if len(ranked) else "no config has >= 3 runs yet (ranking needs 3)"


def comparison_table(comparisons: list[PairedComparison]) -> pd.DataFrame | str:
    """Rows (config, metric): means, paired difference, its CI, d_z and p-values."""
    if not comparisons:
        return "no baseline block (parameter compare_with, or block0.nc in out_dir)"
    table = pd.DataFrame([c.row() for c in comparisons])[COMPARISON_COLUMNS].set_index(["treatment_config", "metric"])
    return table.round(4)


def resolved_configuration(result: Block) -> str:
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


def show_block_report(result: Block) -> list[PairedComparison]:
    """Display the block's report (in a notebook); returns its paired comparisons.

    A block with its own controls (``BlockDefinition.self_controlled``) shows its levers report
    (``report.levers.show_report``), its statistics per config and metric under both R2
    definitions and its resolved configuration; any other block its comparison with the
    baseline block (``baseline_comparisons``, ``show_report``).
    """
    note = repairs_note(json.loads(result.ds.attrs.get("repairs", "[]")))
    if note:
        display(Markdown(note))
    if not block_definition(result.number).self_controlled:
        comparisons = baseline_comparisons(result)
        show_report(result, comparisons)
        return comparisons
    comparisons = levers.show_report(result.ds, out_dir=result.folder)
    display(Markdown("### Statistics per config, one dot per run, and the configuration"))
    display(variance_table(result.statistics))
    fig = distribution_figure(result.ds, LEVER_DISTRIBUTION_METRICS)
    display(fig)
    plt.close(fig)
    display(HTML(collapsed("first run's configuration, resolved (seeds and arms differ per run); click to open",
                           resolved_configuration(result))))
    return comparisons


def how_to_read(result: Block) -> str:
    """Markdown: how to read the block's report, its rules and numbers read from the constants
    and the run configs that apply them."""
    evaluation = result.specs[0].config.evaluation
    pairs = len({(s.ground_truth, s.sim_seed, s.train_seed) for s in result.specs})
    definitions = (f"- *R2 definitions*: **affine** = {R2_DEFINITIONS['affine']} "
                   f"(`evaluation.recovery.r2_affine`; conn_R2 on the corrected weights W* of the edges with "
                   f"|W* - W| <= {W_OUTLIER:g}; tau_R2, V_rest_R2 on every neuron); **identity** = 1 - SS_res / "
                   f"SS_tot about learned = true on the inliers |learned - true| <= {W_OUTLIER:g} (W*), "
                   f"{evaluation.tau_outlier_threshold:g} (tau), {evaluation.vrest_outlier_threshold:g} (V_rest) "
                   f"(`evaluation.recovery.r2_identity`); it is negative when the learned values are further from "
                   f"the truth than the truth's mean is.")
    smallest_p = f"{2 / 2 ** pairs:.3g}" if pairs else "n/a"
    paired = (f"- *Paired comparisons*: mean difference (treatment - control) on the same (ground truth, "
              f"sim_seed, train_seed) pairs, its 95 % t interval, the 95 % percentile-bootstrap interval, the "
              f"exact sign-flip p, d_z (mean / SD of the differences), paired t and Wilcoxon p. With {pairs} pairs "
              f"the smallest two-sided sign-flip p is {smallest_p}, and a bootstrap interval above 0 only says "
              f"that every pair is positive; a claim needs {CLAIM_MIN_PAIRS} pairs (`study.comparison`).")
    field = (f"- *The field's convention*: `inliers [all] (% dropped)` = identity R2 on the inliers "
             f"|learned - true| <= {evaluation.field_V_rest_threshold:g} (V_rest), "
             f"{evaluation.field_tau_threshold:g} (tau), {evaluation.field_W_threshold:g} (W*), identity R2 on "
             f"every neuron or edge, and the share dropped (`evaluation.recovery.field_metrics`).")
    readouts = ("- *Readouts* of tau and V_rest: **plain** (f_theta at message 0, the seed's; names without "
                "a suffix) and **corrected** (f_theta at each neuron's learned silent message, the message with "
                "every presynaptic neuron at 0, where the true synapse transmits nothing; `_corrected`). A "
                "message offset that f_theta absorbs moves the plain readout and not the corrected one "
                "(`evaluation.recovery`).")
    definition = block_definition(result.number)
    if definition.self_controlled:
        epochs = {}
        for spec in result.specs:
            epochs.setdefault(spec.arm, spec.config.training.n_epochs)
        arm, control = definition.focus or ("(no focus arm)", definition.baseline)
        lines = [f"- *Answers*: (1) {arm} minus {control} on the same seed pairs, at each level of the axes; "
                 f"(2) every cell minus the gold standard ({definition.baseline} at the first levels), "
                 f"ranked by the V_rest_R2 gain, with its conn_R2 and tau_R2 change, per R2 definition and readout. "
                 f"V_rest_R2 is *raised* when {RAISE_RULE}; conn_R2 is *kept* when {KEEP_RULE}.",
                 paired,
                 "- *Budget*: " + ", ".join(f"{a} trains {n} epoch{'s' * (n != 1)}" for a, n in epochs.items())
                 + f" of the same iterations each; {control} is the control of {arm} at equal budget.",
                 "- *Epoch 2*: the per-epoch regulariser schedule switches W L1 and f_theta L1 on at epoch 2; the "
                 "epoch-2 table says how far conn_R2 and V_rest_R2 fall in its first tenth.",
                 definitions, field, readouts]
        return "### How to read this report\n" + "\n".join(lines)
    robust = ", ".join(f"{m} with CV < {100 * cv:g} % and min > {lo:.2f}" for m, (cv, lo) in ROBUST_RULES.items())
    lines = [f"- *Statistics*: per config and metric, the number of runs, mean, std (ddof 1), CV and min. "
             f"**robust**: {robust}. **fragile**: any metric with CV > {100 * FRAGILE_CV:g} % or a run below "
             f"{FRAGILE_MIN_FRACTION:g} x its mean, or a failed run. The line under the table says which rule each "
             f"config meets or misses.",
             f"- *Ranking* (configs with >= {RANK_MIN_RUNS} runs): score = mean(conn)(1 - CV(conn)) + "
             f"{RANK_V_REST_WEIGHT:g} mean(V_rest)(1 - CV(V_rest)).",
             paired.replace("(treatment - control)", "(this block's config - the baseline block's)"),
             definitions]
    return "### How to read this report\n" + "\n".join(lines)


def show_report(result: Block, comparisons: list[PairedComparison]) -> None:
    """Display every section of a block report in order, each under its heading (in a notebook).

    Verdict and key figure first; tables whole (no column or row elision); the other figures;
    the resolved configuration collapsed at the end.
    """
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
             lambda: (figure(key if key is not None else distribution_figure(result.ds)),
                      display(Markdown(caption))),
             lambda: (table(variance_table(result.statistics)),
                      display(Markdown("\n".join(f"- **{cfg}**: {flag_reasons(row)}"
                                                  for cfg, row in result.statistics.iterrows())))),
             lambda: table(ranking_table(result.ranking)),
             lambda: table(comparison_table(comparisons)),
             lambda: figure(distribution_figure(result.ds) if key is not None else None),
             lambda: figure(trajectory_figure(result.ds)),
             lambda: figure(embedding_figure(result.ds, result.folder)),
             lambda: display(HTML(collapsed("first run's configuration, resolved (seeds differ per run); click "
                                            "to open", resolved_configuration(result))))]
    for title, show in zip(SECTIONS, parts):
        if title.startswith("Metric distributions") and key is None:
            continue  # already the key figure
        display(Markdown(f"### {title}"))
        show()
