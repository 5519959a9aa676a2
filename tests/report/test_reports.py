"""Report building blocks: the HTML check, flag reasons, headlines, trajectory observations,
embedding separation, figures of paired comparisons, and the live-progress monitor."""

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import nbformat
import numpy as np
import pandas as pd
import pytest

from flyvis_study.evaluation.clustering import embedding_separation
from flyvis_study.evaluation.trajectory import trajectory_observations
from flyvis_study.report.figures import paired_figure
from flyvis_study.report.html import render_html, report_problems
from flyvis_study.report.verdicts import block_headline
from flyvis_study.study.comparison import PairedComparison
from flyvis_study.study.progress import BlockMonitor, describe, snapshot, write_block_status
from flyvis_study.study.record import NETCDF_ENGINE
from flyvis_study.study.statistics import flag_reasons
from flyvis_study.train.progress import write_run_progress


def _png() -> str:
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _render(tmp_path, outputs, widgets: bool = False) -> str:
    nb = nbformat.v4.new_notebook()
    if widgets:  # what JupyterLab saves with a live progress bar
        nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {
            "state": {"1": {"model_name": "FloatProgressModel"}}, "version_major": 2, "version_minor": 0}}
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# A report\nNo scripts, please."),
                nbformat.v4.new_code_cell("x", outputs=outputs)]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, str(path))
    return render_html(path, tmp_path / "nb.html").read_text()


def test_a_clean_report_passes_and_loads_nothing_from_the_network(tmp_path):
    png = nbformat.v4.new_output("display_data", data={"image/png": _png(), "text/plain": "<Figure>"})
    text = _render(tmp_path, [png, nbformat.v4.new_output("stream", name="stdout", text="fine\n")])
    assert report_problems(text, min_figures=1) == []
    assert "<script src=" not in text and "mathjax" not in text.lower()
    assert report_problems(text, min_figures=2) == ["1 embedded figures, expected at least 2"]


@pytest.mark.parametrize("output,problem", [
    (nbformat.v4.new_output("error", ename="ValueError", evalue="bad",
                            traceback=["Traceback (most recent call last)", "ValueError: bad"]), "a traceback"),
    (nbformat.v4.new_output("stream", name="stderr", text="something\n"), "output on stderr"),
    (nbformat.v4.new_output("stream", name="stdout", text="/x.py:1: UserWarning: careful\n"), "a warning"),
    (nbformat.v4.new_output("stream", name="stdout", text="2026 - distributed.nanny - WARNING - x\n"), "a warning"),
    (nbformat.v4.new_output("display_data", data={"text/html": '<img src="https://example.org/a.png">'}),
     "an external URL"),
    (nbformat.v4.new_output("display_data", data={"application/vnd.jupyter.widget-view+json": {
        "model_id": "1", "version_major": 2, "version_minor": 0}, "text/plain": "bar"}), "widget state"),
])
def test_each_problem_is_named(tmp_path, output, problem):
    found = report_problems(_render(tmp_path, [output], widgets=problem == "widget state"))
    assert any(p.startswith(problem + ":") for p in found), found


def _stats(**over):
    row = {"n_runs": 4, "failed": 0}
    for m in ("connectivity_R2", "tau_R2", "V_rest_R2", "cluster_accuracy", "test_R2", "test_pearson"):
        row.update({f"{m}_mean": 0.95, f"{m}_cv": 0.01, f"{m}_min": 0.94})
    row.update(over)
    return pd.Series(row)


def test_flag_reasons_name_the_rule_each_metric_misses():
    assert flag_reasons(_stats()) == "robust (every rule met); not fragile"
    line = flag_reasons(_stats(V_rest_R2_mean=0.2, V_rest_R2_cv=0.3, V_rest_R2_min=0.05, failed=1))
    assert line.startswith("not robust: V_rest_R2 CV 30.0 % (needs < 20 %), V_rest_R2 min 0.050 (needs > 0.40)")
    assert "fragile: V_rest_R2 CV 30.0 % > 25 %, V_rest_R2 min 0.050 below 0.5 x its mean, 1 failed run(s)" in line
    assert flag_reasons(_stats(n_runs=1)) == "robust / fragile need >= 2 runs"


def _comparison(metric, baseline, treatment, config="two_stage"):
    diff = np.subtract(treatment, baseline)
    return PairedComparison(metric, "gold_standard", config, pairs=[(k, k) for k in range(len(diff))],
                            baseline=list(baseline), treatment=list(treatment),
                            t_low=float(diff.min()), t_high=float(diff.max()))


def test_headline_and_paired_figure():
    comps = [_comparison("V_rest_R2", [0.2, 0.3], [0.1, 0.2]), _comparison("connectivity_R2", [0.9, 0.9], [0.8, 0.9]),
             _comparison("tau_R2", [0.9, 0.9], [0.9, 0.9])]
    line = block_headline(pd.DataFrame(), comps)
    assert line == ("vs gold_standard on 2 seed pairs (mean paired difference, 95 % t interval): two_stage: "
                    "V_rest_R2 -0.100 [-0.100, -0.100], connectivity_R2 -0.050 [-0.100, +0.000]")
    fig = paired_figure(comps)
    paired_axes, forest = fig.axes[:3], fig.axes[3]
    assert [len(ax.lines) for ax in paired_axes] == [2, 2, 2]  # one line per seed pair
    assert [t.get_text() for t in forest.get_yticklabels()] == [
        "two_stage: V_rest_R2", "two_stage: connectivity_R2", "two_stage: tau_R2"]
    plt.close(fig)
    assert paired_figure([PairedComparison("V_rest_R2", "gold_standard", "two_stage")]) is None


def _rows(conn, vrest, phases, epochs):
    return [{"step": 100 * i, "epoch": e, "phase": p, "connectivity_r2": c, "vrest_r2": v, "tau_r2": 0.5}
            for i, (c, v, p, e) in enumerate(zip(conn, vrest, phases, epochs))]


def test_trajectory_observations_report_peaks_switch_drops_and_the_vrest_phase():
    rows = _rows(conn=[0.5, 0.9, 0.92, 0.80, 0.85], vrest=[0.1, 0.1, 0.3, 0.3, 0.25],
                 phases=["joint", "joint", "V_rest", "joint", "V_rest"], epochs=[0, 0, 0, 1, 1])
    obs = trajectory_observations(rows)
    assert obs[0] == "conn_R2 peaked at 0.920 at iteration 200 (epoch 0, V_rest) and ended 0.070 below it"
    assert "conn_R2 fell by 0.120 at the start of epoch 1 (0.920 -> 0.800)" in obs
    assert "conn_R2 rose by 0.020 at the switch to the V_rest phase in epoch 0 (0.900 -> 0.920)" in obs
    assert "V_rest_R2 rose in the V_rest phase of epoch 0 (0.100 -> 0.300)" in obs
    assert "V_rest_R2 fell in the V_rest phase of epoch 1 (0.300 -> 0.250)" in obs
    steady = trajectory_observations(_rows([0.5, 0.9], [0.1, 0.2], ["joint"] * 2, [0, 0]))
    assert steady[0].endswith("and held to the end") and len(steady) == 2
    assert trajectory_observations([]) == ["no in-loop R2 was logged"]


def test_embedding_separation_counts_separated_types():
    rng = np.random.default_rng(0)
    types = np.repeat(np.arange(5), 40)
    apart = np.column_stack([types * 10.0, np.zeros(types.size)]) + rng.normal(0, 0.5, (types.size, 2))
    sep = embedding_separation(apart, types)
    assert sep["n_types_separated"] == sep["n_types"] == 5 and sep["silhouette"] > 0.9
    mixed = embedding_separation(rng.normal(size=(types.size, 2)), types)
    assert mixed["n_types_separated"] == 0 and mixed["silhouette"] < 0.1
    half = apart.copy()
    half[types == 4] = apart[types == 3][0]  # type 4 collapsed onto a type-3 point: 3 and 4 overlap
    assert embedding_separation(half, types)["n_types_separated"] in (3, 4)


def test_monitor_lines_count_runs_and_show_phase_r2_and_eta(tmp_path):
    ids = ["a", "b", "c"]
    for i in ids:
        (tmp_path / "runs" / i).mkdir(parents=True)
    lines = []
    monitor = BlockMonitor(tmp_path, ids, lines.append, interval=0)
    assert describe(snapshot(tmp_path, ids), None) == "runs 0/3 done"
    assert monitor.check(None, -1) == (None, -1) and lines == []  # the block has not started: silent
    write_block_status(tmp_path, 1, None)
    write_run_progress(tmp_path / "runs" / "a", 1, 49, 2, 100, "V_rest", {"connectivity_r2": 0.9, "vrest_r2": 0.3})
    (tmp_path / "runs" / "b" / "run.nc").write_bytes(b"x")
    last, _ = monitor.check(None, -1)
    assert lines[-1].startswith("runs 1/3 done | a: 75 % (epoch 2/2, V_rest phase; conn 0.900, V_rest 0.300) | ETA")
    assert monitor.check(last, -1)[0] == last and len(lines) == 1  # unchanged: no new line
    write_block_status(tmp_path, 1, "http://127.0.0.1:1/status")
    monitor.dashboard_shown = False
    monitor.check(last, -1)
    assert "Dask dashboard: http://127.0.0.1:1/status" in lines


def test_lever_headline_names_both_cells_of_its_best_change():
    """The index line of a self-controlled block names the best cell's levels and the gold
    standard's cell it is paired against (block 8's best arm at budget 3 against the gold standard
    at budget 1), with the number equal to the paired mean of the committed runs."""
    import xarray as xr
    from conftest import REPO

    from flyvis_study.report.levers import headline
    from flyvis_study.study.levers import lever_comparisons

    ds = xr.load_dataset(REPO / "reports" / "examples" / "small" / "block8.nc", engine=NETCDF_ENGINE)
    line = headline(lever_comparisons(ds, n_resamples=99))
    best, gold = (ds["V_rest_R2"].sel(config=c).isel(ground_truth=0).values
                  for c in ("two_stage_constant_schedule_budget=3", "gold_standard_budget=1"))
    mean = np.mean([best[k, k] - gold[k, k] for k in (0, 1)])
    assert line.startswith("Best V_rest_R2 change against gold_standard at budget 1: "
                           f"two_stage_constant_schedule at budget 3, {mean:+.3f} [")
    assert line.endswith("on 2 pairs")
