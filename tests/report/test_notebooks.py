"""Every notebook executed end to end at the tiny preset (papermill, HTML, netCDF); notebook sources."""

import ast
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import numpy as np
import papermill
import pytest
import xarray as xr
from conftest import FAST, REPO, copy_tiny_blocks

from flyvis_study.evaluation.names import R2_DEFINITIONS
from flyvis_study.report.html import report_problems
from flyvis_study.report.notebooks import execute_block, execute_notebook, execute_summary
from flyvis_study.study.blocks import BLOCKS
from flyvis_study.study.record import NETCDF_ENGINE
from flyvis_study.study.statistics import FRAGILE_CV, FRAGILE_MIN_FRACTION

_spec = importlib.util.spec_from_file_location("block_notebooks", REPO / "tools" / "block_notebooks.py")
block_notebooks = importlib.util.module_from_spec(_spec)  # the generator of the block notebooks
_spec.loader.exec_module(block_notebooks)

NOTEBOOK_DIR = REPO / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
PROVENANCE = ("package_version", "git_commit", "torch_version", "device", "device_name")


def test_one_notebook_per_block_plus_summary_and_explore():
    assert {p.name for p in NOTEBOOKS} == {b.notebook for b in BLOCKS.values()} | {
        "study_summary.ipynb", "explore.ipynb", "explore_search.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_committed_clean_and_equal_to_its_source(path):
    """Every block notebook is what ``tools/block_notebooks.py`` writes from the one source
    ``notebooks/sources/block.py``; the others are paired with their own jupytext source."""
    nb = nbformat.read(str(path), as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "strip outputs"
    assert "widgets" not in nb.metadata
    assert "parameters" in code[0].metadata.get("tags", [])
    assert sum("parameters" in c.metadata.get("tags", []) for c in code) == 1
    blocks = {b.notebook: n for n, b in BLOCKS.items()}
    if path.name in blocks:
        expected = block_notebooks.block_notebook(blocks[path.name])
        assert [(c.cell_type, c.source, c.metadata) for c in expected.cells] == [
            (c.cell_type, c.source, c.metadata) for c in nb.cells], (
            f"{path.name} differs from notebooks/sources/block.py: run `python tools/block_notebooks.py`")
        return
    source = NOTEBOOK_DIR / "sources" / f"{path.stem}.py"
    paired = jupytext.read(source)
    assert [(c.cell_type, c.source) for c in paired.cells] == [(c.cell_type, c.source) for c in nb.cells], (
        f"{path.name} and {source.name} differ: run `jupytext --sync {path}`")


def test_block_notebooks_share_every_cell_but_title_parameters_and_number():
    """One source: the block notebooks differ only in the title cell, the parameters cell and ``BLOCK = N``."""
    notebooks = [nbformat.read(str(NOTEBOOK_DIR / b.notebook), as_version=4) for b in BLOCKS.values()]
    for nb in notebooks[1:]:
        assert len(nb.cells) == len(notebooks[0].cells)
        differ = [k for k, (a, b) in enumerate(zip(notebooks[0].cells, nb.cells)) if a.source != b.source]
        assert {0, 2} <= set(differ) <= {0, 1, 2}  # blocks 0 and 1 have the same parameters
    for number, nb in zip(BLOCKS, notebooks):
        assert f"BLOCK = {number}\n" in nb.cells[2].source
        assert nb.cells[0].source.startswith(f"# {BLOCKS[number].title}\n\n**Question.** {BLOCKS[number].question}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_papermill_reads_every_parameter_of_the_parameters_cell(path):
    """papermill parses a parameters cell line by line and skips, with only a printed warning, a
    line it cannot read (an '=' in a comment was one): such a parameter would then be missing
    from ``papermill --help-notebook`` and ``inspect_notebook``. Every assigned name must be read."""
    nb = nbformat.read(str(path), as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    if not cells:
        pytest.skip(f"{path.name} has no parameters cell")
    assigned = {t.id for node in ast.parse(cells[0].source).body if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)}
    assert set(papermill.inspect_notebook(str(path))) == assigned


@pytest.mark.parametrize("number", sorted(BLOCKS))
def test_block_notebook_parameters_are_the_validated_model(number):
    """The parameters cell names exactly the block's parameters (papermill only warns on others)."""
    names = set(papermill.inspect_notebook(str(NOTEBOOK_DIR / BLOCKS[number].notebook)))
    assert names == set(BLOCKS[number].parameters.model_fields)


def _check_block_outputs(out, number, configs, n_runs):
    html = out["html"].read_text()
    # key figure, distributions (with a baseline), trajectories, embeddings; no traceback, warning, URL
    paired = number != 0 and (out["nc"].parent / "block0.nc").is_file()  # the key figure is then extra
    assert report_problems(html, min_figures=4 if paired else 3) == []
    order = [html.index(h) for h in ("Parameters (resolved)", "Verdict", "Key figure",
                                     "Statistics per config and metric", "Resolved configuration",
                                     "How to read this report")]
    assert order == sorted(order)  # parameters, then verdict and key figure, the configuration and the guide last
    assert f"CV &gt; {100 * FRAGILE_CV:g} % or a run below {FRAGILE_MIN_FRACTION:g} x its mean" in html  # rendered
    assert "seed pairs: every cell of the block runs on each" in html  # parameter meanings shown whole
    assert "<details><summary>first run's configuration" in html and "rows ×" not in html  # tables whole
    assert "run_block(" not in html  # rendered without code
    ds = xr.load_dataset(out["nc"], engine=NETCDF_ENGINE)
    assert set(ds["connectivity_R2"].dims) == {"config", "ground_truth", "sim_seed", "train_seed"}
    assert sorted(ds["config"].values) == sorted(configs)
    assert int((ds["run_id"] != "").sum()) == n_runs
    assert all(ds.attrs[k] for k in PROVENANCE if k != "git_commit")
    assert ds.attrs["block"] == number
    return ds, html


@pytest.mark.slow
def test_blocks_0_1_summary_and_block5_from_the_best_of_block1(tiny_blocks, tmp_path, dataset_root):
    """Blocks 0 and 1 as the main job runs them (the session's ``tiny_blocks``), then the study
    summary, the index and block 5 in a copy of their folder."""
    out0, out1 = tiny_blocks[0], tiny_blocks[1]
    _check_block_outputs(out0, 0, ["gold_standard"], 2)
    ds1, html1 = _check_block_outputs(out1, 1, ["two_stage"], 3)
    folder = copy_tiny_blocks(tiny_blocks, tmp_path / "study")
    common = {"overrides": FAST, "cache_dir": str(dataset_root), "out_dir": str(folder)}
    assert list(ds1["sim_seed"].values) == [0, 1, 2]
    assert ds1["summary"].sel(metric="connectivity_R2", statistic="n").item() == 3
    assert "step" in ds1.dims and "traj_phase" in ds1
    assert "mean_difference" in json.dumps(nbformat.read(str(out1["ipynb"]), as_version=4))  # found block0.nc
    assert "on 2 seed pairs" in html1
    log = (folder / "two_stage_analysis.md").read_text()
    assert log.count("## Iter") == 3 and log.count("Observation: conn_R2 peaked at ") == 3
    verbs = ("rose", "fell", "stayed")
    assert sum(log.count(f"V_rest_R2 {verb} in the V_rest phase of epoch 0") for verb in verbs) == 3
    assert log.count("Embedding: silhouette by cell type ") == 3 and " of 65 types separated" in log
    summary = execute_summary(folder)
    text = summary["html"].read_text()
    assert "Answer:" in text and "two_stage (block 1)" in text
    assert report_problems(text, min_figures=1) == []  # the paired figure leads
    assert text.index("Answer:") < text.index('src="data:image/png') < text.index("Per-block statistics")
    assert text.index("What limits V_rest here:") < text.index("Answer:")  # not measured yet: said first
    index = summary["index"].read_text()
    assert report_problems(index) == []
    for link in ("block0.html", "block1.html", "study_summary.html"):
        assert f'href="{link}"' in index
    assert "flyvis-study block 1 --preset tiny --out" in index and "-p replicates=3" in index
    assert "two_stage: V_rest_R2 " in index  # block 1's one-line verdict against block 0
    out5 = execute_block(5, {**common, "replicates": 1, "best_from": [str(folder / "block1.nc")]})
    _check_block_outputs(out5, 5, ["best(two_stage)"], 1)


@pytest.mark.slow
def test_blocks_2_and_4_grids(tmp_path, dataset_root):
    common = {"overrides": FAST, "cache_dir": str(dataset_root), "out_dir": str(tmp_path), "replicates": 1}
    out2 = execute_block(2, {**common, "joint_ratio": [0.3, 0.5]})
    _check_block_outputs(out2, 2, ["joint_ratio=0.3", "joint_ratio=0.5"], 2)
    log = (tmp_path / "joint_ratio=0.3_analysis.md").read_text()
    assert "Mutation: training.alternate_joint_ratio 0.4 -> 0.3" in log
    assert "Parent rule: block 2 grid over training.alternate_joint_ratio; parent = two_stage.yaml" in log
    out4 = execute_block(4, common)  # the default grid: epochs {2, 3} x augmentation {20, 25, 30}
    labels = [f"epochs={e}_aug={a}" for e in (2, 3) for a in (20, 25, 30)]
    ds4, _ = _check_block_outputs(out4, 4, labels, 6)
    runs = ds4.isel(ground_truth=0, sim_seed=0, train_seed=0)
    logged = {c: runs["step"].values[np.isfinite(runs["traj_conn"].sel(config=c).values)] for c in labels}
    assert len(logged["epochs=3_aug=20"]) == 3 * len(logged["epochs=2_aug=20"]) // 2 > 0
    assert logged["epochs=2_aug=20"][-1] < logged["epochs=2_aug=30"][-1] < logged["epochs=3_aug=30"][-1]
    assert sorted(set(ds4["n_epochs"].values.ravel())) == [2, 3]


@pytest.mark.slow
def test_block_3_on_a_local_dask_cluster(tmp_path, dataset_root):
    out = execute_block(3, {"replicates": 1, "workers": 2, "lr_ratio": [0.05, 0.2], "overrides": FAST,
                            "cache_dir": str(dataset_root), "out_dir": str(tmp_path)})
    _check_block_outputs(out, 3, ["lr_ratio=0.05", "lr_ratio=0.2"], 2)


@pytest.mark.slow
def test_block_6_levers_report_and_its_comparisons(tmp_path, dataset_root):
    """Block 6 (3 arms x blank {0, 0.5}, plus lr_drop at blank 0 only through ``arm_levels``, x 2
    pairs): report order, both R2 definitions named, the comparison counts of the incomplete
    factorial, paired numbers equal to the runs', std_2's first epoch equal to std_1."""
    from flyvis_study.study.levers import lever_comparisons, lever_table

    arms = ["gold_standard", "standard_2_epochs", "two_stage"]
    out = execute_block(6, {"replicates": 2, "arms": arms + ["lr_drop"], "blank_fraction": [0, 0.5],
                            "arm_levels": {"lr_drop": {"blank_fraction": [0]}}, "overrides": FAST,
                            "cache_dir": str(dataset_root), "out_dir": str(tmp_path)})
    html = out["html"].read_text()
    assert report_problems(html, min_figures=5) == []
    order = [html.index(h) for h in ("Parameters (resolved)", "1. Does two_stage raise V_rest_R2",
                                     "2. Which cell raises V_rest_R2 most", "in the field convention",
                                     "Effect of the corrected readout", "Cells: means and 95 % t intervals",
                                     "Forest plot", "Paired plot", "Signed V_rest error per cell type",
                                     "At the start of epoch 2", "V_rest_R2 during training", "How to read this report")]
    assert order == sorted(order)
    assert "V_rest_R2 (affine)" in html and "(identity)" in html and "V_rest_R2_identity" in html
    assert "V_rest_R2_corrected" in html and "inliers [all] (% dropped)" in html
    ds = xr.load_dataset(out["nc"], engine=NETCDF_ENGINE)
    labels = [f"{a}_blank={b}_noise=0.05" for a in arms for b in ("0", "0.5")] + ["lr_drop_blank=0_noise=0.05"]
    assert sorted(ds["config"].values) == sorted(labels) and int((ds["run_id"] != "").sum()) == 14
    comparisons = lever_comparisons(ds, n_resamples=999)
    kinds = [c.kind for c in comparisons if c.metric == "V_rest_R2"]
    assert {k: kinds.count(k) for k in set(kinds)} == {"vs gold_standard": 5, "vs standard_2_epochs": 5,
                                                       "blank_fraction": 3, "vs gold standard": 6}
    assert not any(c.arm == "lr_drop" and c.levels["blank_fraction"] == 0.5 for c in comparisons)
    log = (tmp_path / "two_stage_blank=0.5_noise=0.05_analysis.md").read_text()
    mutation = next(line for line in log.splitlines() if line.startswith("Mutation: ")).removeprefix("Mutation: ")
    assert sorted(mutation.split("; ")) == ["simulation.stimulus.blank_fraction 0.0 -> 0.5",
                                            "training.alternate_training False -> True", "training.n_epochs 1 -> 2"]
    assert "Parent rule: block 6 grid over the arm two_stage (two_stage.yaml) x " in log
    assert f"identity ({R2_DEFINITIONS['identity']}): connectivity_R2_identity=" in log  # the words, named once
    # at the tiny preset fewer than two tau_hat lie within 0.1 of their tau, so tau_R2_identity is NaN
    assert all(c.n_pairs == 2 for c in comparisons if "tau_R2_identity" not in c.metric and "field" not in c.metric)
    c = next(c for c in comparisons if c.kind == "vs standard_2_epochs" and c.arm == "two_stage"
             and c.levels["blank_fraction"] == 0.5 and c.metric == "V_rest_R2_identity")
    two, std = (ds["V_rest_R2_identity"].sel(config=f"{a}_blank=0.5_noise=0.05").values.ravel()
                for a in ("two_stage", "standard_2_epochs"))
    ok = np.isfinite(two) & np.isfinite(std)
    assert c.mean_difference == pytest.approx(float(np.mean(two[ok] - std[ok])))
    table = lever_table(ds)
    assert table.loc[("two_stage", 0.5, 0.05), "V_rest_R2_identity_mean"] == pytest.approx(float(np.mean(two[ok])))
    one, two_epochs = (ds.sel(config=f"{a}_blank=0_noise=0.05") for a in ("gold_standard", "standard_2_epochs"))
    first = np.isfinite(one["traj_conn"].values)
    np.testing.assert_array_equal(one["traj_conn"].values[first], two_epochs["traj_conn"].values[first])


@pytest.mark.slow
def test_block_7_what_limits_v_rest_report(tmp_path, dataset_root):
    """Block 7 at the tiny preset (the gold standard, the silent anchor and the observed target at
    blank 0, 2 pairs): the levers train through the notebook, every run holds both readouts and
    the field's convention, and the report shows them, with the per-type error figure."""
    arms = ["gold_standard", "silent_anchor", "observed_target"]
    out = execute_block(7, {"replicates": 2, "arms": arms, "blank_fraction": [0], "overrides": FAST,
                            "cache_dir": str(dataset_root), "out_dir": str(tmp_path)})
    html = out["html"].read_text()
    assert report_problems(html, min_figures=5) == []
    assert "2. Which cell raises V_rest_R2 most over the gold standard (gold_standard" in html
    assert "field R2, corrected readout" in html and "Signed V_rest error per cell type" in html
    ds = xr.load_dataset(out["nc"], engine=NETCDF_ENGINE)
    assert int((ds["run_id"] != "").sum()) == 6 and sorted(set(ds["arm"].values)) == sorted(arms)
    for name in ("V_rest_R2_corrected", "V_rest_R2_field", "V_rest_R2_field_all_corrected", "tau_R2_corrected",
                 "connectivity_R2_field", "V_rest_field_dropped"):
        assert np.isfinite(ds[name].values[ds["run_id"].values != ""]).all(), name
    configs = {a: json.loads(ds["config_json"].sel(config=f"{a}_blank=0").values.ravel()[0])["training"]
               for a in arms}
    assert configs["silent_anchor"]["coeff_g_phi_silent"] > 0
    assert "coeff_g_phi_silent" not in configs["gold_standard"]  # at its default: left out of the run id
    assert configs["observed_target"]["derivative_target"] == "observed"
    log = (tmp_path / "silent_anchor_blank=0_analysis.md").read_text()
    assert "target=clean, silent_anchor=1.0" in log and "Readouts and the field's convention: V_rest_R2 (affine) " \
        "plain=" in log and "V_rest corrected " in log
    # block 8 (the budget ladder) in the same folder: budget 1 is block 7's gold standard (reused),
    # budget 2 trains 2 x FAST's iterations per epoch on the same 2 pairs
    before = sorted(p.name for p in (tmp_path / "runs").iterdir())
    ladder = execute_block(8, {"replicates": 2, "arms": ["gold_standard"], "budget": [1, 2], "overrides": FAST,
                               "cache_dir": str(dataset_root), "out_dir": str(tmp_path)})
    assert report_problems(ladder["html"].read_text(), min_figures=3) == []
    new = sorted(set(p.name for p in (tmp_path / "runs").iterdir()) - set(before))
    eight = xr.load_dataset(ladder["nc"], engine=NETCDF_ENGINE)
    reused = {r for r in eight["run_id"].sel(config="gold_standard_budget=1").values.ravel() if r}  # "": no run
    assert len(new) == 2 and len(reused) == 2 and reused <= set(before)
    one, two = (eight["n_iterations_per_epoch"].sel(config=f"gold_standard_budget={k}").values for k in (1, 2))
    one, two = one[np.isfinite(one)], two[np.isfinite(two)]  # the cells with a run: the 2 pairs
    assert one.size == two.size == 2
    assert (abs(two - 2 * one) <= 1).all()  # int(samples x 2 x fraction) against 2 x int(samples x fraction)
    summary = execute_summary(tmp_path)["html"].read_text()
    assert report_problems(summary) == []
    first = summary.index("What limits V_rest here (block 7, against gold_standard")
    caveats = summary.index("Caveats: preset <code>tiny</code>, extent", first)  # block 7's (block 8's come first)
    assert first < summary.index("silent_anchor: V_rest_R2 ") < caveats
    assert summary.index("What limits V_rest here (block 8, against gold_standard, budget 1)") < first  # newest first
    assert first < summary.index("Answers of the blocks with their own controls")
    assert "gold_standard along budget, against budget 1 on the same pairs: budget 2: V_rest_R2 " in summary


@pytest.mark.slow
def test_explore_notebook_tours_blocks_and_trains_a_live_run(tiny_blocks, tmp_path, dataset_root):
    """The tour (on the session's tiny blocks 0 and 1, standing in for the committed examples),
    then the optional live run (tiny preset, progress bar)."""
    examples = copy_tiny_blocks(tiny_blocks, tmp_path / "examples")
    run_dir = tmp_path / "run"
    executed = execute_notebook(NOTEBOOK_DIR / "explore.ipynb", tmp_path / "explore.ipynb",
                                {"examples_dir": str(examples), "train_live": True, "out_dir": str(run_dir),
                                 "overrides": FAST, "cache_dir": str(dataset_root)})
    nb = nbformat.read(str(executed), as_version=4)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    images = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert images == 8  # paired lines, 4 panels of the median run, the side-by-side, 2 of the live run
    text = json.dumps(nb)
    shown = json.dumps([c.get("outputs", []) for c in nb.cells])
    assert re.search(r"s\d+_t\d+__[0-9a-f]{8}", shown)  # a run id
    assert "sign-flip p" in shown and "mean_difference" not in shown
    assert "widget-view" not in text and "widgets" not in nb.metadata and "IProgress" not in text
    assert (run_dir / "metrics.json").is_file() and (run_dir / "recovered.npz").is_file()


def test_relative_out_dir_is_taken_from_the_project_folder():
    from flyvis_study.resources import checkout_root, project_path

    assert checkout_root() == REPO
    assert project_path("reports") == REPO / "reports"
    assert project_path("/abs/x") == Path("/abs/x")


def test_notebook_runs_print_no_kernel_transport_warning(tmp_path):
    """The kernel is reached over IPC (``report.notebooks.LocalKernelManager``): the terminal shows
    no 'running over TCP without encryption' line (it did once per notebook over TCP), and its
    sockets are made outside the project folder and the caller's folder (no ``kernel-ipc-N`` left
    beside the user's work when a run is killed)."""
    before = set(REPO.glob("kernel-ipc*"))
    caller = tmp_path / "caller"
    caller.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print(6 * 7)"),  # where this kernel's sockets are
                nbformat.v4.new_code_cell("from ipykernel.kernelapp import IPKernelApp; "
                                          "print(IPKernelApp.instance().transport, IPKernelApp.instance().ip)")]
    nbformat.write(nb, str(tmp_path / "t.ipynb"))
    code = ("from pathlib import Path; from flyvis_study.report.notebooks import execute_notebook; "
            f"execute_notebook(Path({str(tmp_path / 't.ipynb')!r}), Path({str(tmp_path / 'o.ipynb')!r}), {{}})")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=caller)
    assert out.returncode == 0, out.stderr
    assert set(REPO.glob("kernel-ipc*")) == before and not list(caller.iterdir())
    assert "without encryption" not in out.stderr and "WARNING" not in out.stderr, out.stderr
    assert "never awaited" not in out.stderr and "Warning" not in out.stderr, out.stderr  # a quiet terminal
    cells = nbformat.read(str(tmp_path / "o.ipynb"), as_version=4).cells
    assert cells[0].outputs[0]["text"] == "42\n"
    transport, sockets = cells[1].outputs[0]["text"].split()
    assert transport == "ipc" and Path(sockets).is_absolute(), sockets
    assert REPO not in Path(sockets).parents and caller not in Path(sockets).parents, sockets
    assert not Path(sockets).parent.exists()  # the private socket folder went with the kernel


@pytest.mark.parametrize("parameters,message", [
    ({"lr_ratoi": 0.05}, "block 3: unknown parameter 'lr_ratoi'; allowed: preset, replicates"),
    ({"lr_ratio": 0}, "block 3: invalid configuration: lr_ratio (config key training.alternate_lr_ratio): Input "
                      "should be greater than 0"),
    ({"replicates": 0}, "block 3: replicates")])
def test_papermill_run_directly_stops_in_the_first_cell_with_one_line(tmp_path, parameters, message):
    """As the design card uses it: `papermill notebooks/block3.ipynb out.ipynb -p lr_ratoi 0.05` (a typo)
    or a bad value stops before any run, the notebook's error being that one line (no frames)."""
    out = tmp_path / "out"
    with pytest.raises(papermill.PapermillExecutionError) as err:
        papermill.execute_notebook(str(NOTEBOOK_DIR / "block3.ipynb"), str(tmp_path / "b3.ipynb"),
                                   parameters={**parameters, "out_dir": str(out)}, progress_bar=False)
    assert err.value.ename == "BlockParameterError" and message in err.value.evalue
    (error,) = [o for c in nbformat.read(tmp_path / "b3.ipynb", as_version=4).cells for o in c.get("outputs", [])
                if o["output_type"] == "error"]
    assert len(error["traceback"]) == 1 and "\n" not in error["evalue"]
    assert not (out / "runs").exists()
