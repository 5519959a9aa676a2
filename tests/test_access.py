"""The results API (open_block, open_run, compare) on tiny blocks made here."""

import json

import matplotlib
import numpy as np
import pytest
import torch
from conftest import FAST, copy_tiny_blocks

import flyvis_study as fs
from flyvis_study import run_block
from flyvis_study.study.comparison import paired_comparison
from flyvis_study.study.record import SCHEMA_VERSION
from flyvis_study.study.statistics import config_statistics
from flyvis_study.world.dataset import get_dataset

matplotlib.use("Agg")
pytestmark = pytest.mark.slow  # every test reads the session's tiny blocks (executed notebooks)


@pytest.fixture(scope="module")
def blocks(tiny_blocks, tmp_path_factory, dataset_root):
    """Blocks 0 (2 pairs) and 1 (3 pairs) through ``run_block``, in a copy of the session's
    ``tiny_blocks`` folder: the same plan, so every run is reused and only the block files are built."""
    out = copy_tiny_blocks(tiny_blocks, tmp_path_factory.mktemp("access") / "study")
    common = {"overrides": FAST, "cache_dir": str(dataset_root), "out_dir": str(out)}
    made = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/run.nc")}
    b0 = run_block(0, {**common, "replicates": 2}, progress=False)
    b1 = run_block(1, {**common, "replicates": 3}, progress=False)
    assert len(made) == 5 and {p: p.stat().st_mtime_ns for p in out.glob("runs/*/run.nc")} == made  # reused
    return b0, b1


def test_open_block_has_the_dataset_runs_and_statistics(blocks):
    _, b1 = blocks
    block = fs.open_block(b1.path)
    assert block.number == 1 and block.configs == ["two_stage"]
    assert len(block.runs) == 3 and set(block.runs["sim_seed"]) == {0, 1, 2}
    np.testing.assert_allclose(block.statistics["connectivity_R2_mean"],
                               config_statistics(b1.ds)["connectivity_R2_mean"])
    assert block.ds["traj_conn"].dims == ("config", "ground_truth", "sim_seed", "train_seed", "step")
    assert block.ground_truths == ["synthetic/seed0"]  # a file from before the axis gets it on reading


def test_median_run_and_run_contents(blocks, dataset_root):
    _, b1 = blocks
    block = fs.open_block(b1.path)
    conn = block.runs["connectivity_R2"]
    run = block.median_run()
    assert run.metrics["connectivity_R2"] == pytest.approx(conn.iloc[(conn - conn.median()).abs().argmin()])
    assert run.config.training.alternate_training and run.config.preset == "tiny"
    log_rows = sum(1 for _ in open(run.path / "metrics.log")) - 1
    traj = run.trajectory
    assert len(traj) == log_rows and list(traj.columns[:3]) == ["step", "epoch", "iteration"]
    assert (traj["step"] == traj["epoch"] * run.n_iterations_per_epoch + traj["iteration"]).all()
    assert set(traj["phase"]) == {"joint", "V_rest"}
    con = run.connectome
    rec = run.recovered
    assert rec["embedding"].shape == (con.n_neurons, 2) and rec["W_corrected"].shape == (con.n_edges,)
    gt = get_dataset(run.config.simulation, root=dataset_root).ground_truth
    np.testing.assert_array_equal(rec["W_true"], gt.W)
    np.testing.assert_array_equal(rec["V_rest_true"], gt.V_rest)
    model = run.model()
    np.testing.assert_array_equal(model.embedding.detach().numpy(), rec["embedding"])
    assert not model.training and isinstance(model.W, torch.nn.Parameter)
    same = block.run("two_stage", int(run.config.simulation.seed), int(run.config.training.seed))
    assert same.path == run.path


def test_every_panel_draws(blocks):
    run = fs.open_block(blocks[1].path).median_run()
    labels = [line.get_label() for line in run.plot_trajectory().axes[0].lines]
    assert [x for x in labels if not x.startswith("_")] == ["conn", "V_rest", "tau"]
    assert len(run.plot_recovered().axes) == 3
    assert run.plot_embedding().axes[0].collections
    functions = run.plot_functions()
    assert len(functions.axes) == 2 and len(functions.axes[0].lines) > 10
    assert run.plot_loss().axes[0].lines
    assert fs.open_block(blocks[1].path).plot_metric("V_rest_R2").axes[0].collections


def test_compare_is_the_paired_comparison(blocks):
    b0, b1 = blocks
    c = fs.compare(b0.path, fs.open_block(b1.path), "V_rest_R2")
    expected = paired_comparison(b0.ds, b1.ds, "V_rest_R2")
    assert c.n_pairs == 2 and c.pairs == [(0, 0), (1, 1)]
    assert json.dumps(c.row(), sort_keys=True) == json.dumps(expected.row(), sort_keys=True)
    assert c.baseline == expected.baseline and c.treatment == expected.treatment


@pytest.mark.slow
def test_blocks_0_1_and_6_in_one_folder_train_shared_runs_once(blocks, tmp_path, dataset_root):
    """Runs are keyed by content: block 6's gold_standard and two_stage cells at blank 0 are
    the runs blocks 0 and 1 made (same resolved config, same seeds) and are not trained again;
    only its new cells (gold_standard at blank 0.5) are. The factors are coordinates."""
    import shutil

    folder = tmp_path / "study"
    shutil.copytree(blocks[0].folder, folder)
    before = {p.parent.name: p.stat().st_mtime_ns for p in (folder / "runs").glob("*/run.nc")}
    assert len(before) == 5  # block 0: 2 runs, block 1: 3 runs
    six = run_block(6, {"overrides": FAST, "cache_dir": str(dataset_root), "out_dir": str(folder),
                        "replicates": 2, "arms": ["gold_standard", "two_stage"], "blank_fraction": [0],
                        "arm_levels": {"gold_standard": {"blank_fraction": [0, 0.5]}}}, progress=False)
    after = {p.parent.name: p.stat().st_mtime_ns for p in (folder / "runs").glob("*/run.nc")}
    assert len(six.specs) == 6 and len(after) == 7  # 4 of block 6's runs were there already
    assert {k: after[k] for k in before} == before  # and were not rewritten
    ds = fs.open_block(six.path).ds
    assert ds.attrs["schema_version"] == SCHEMA_VERSION
    b0, b1 = blocks[0].ds, blocks[1].ds
    shared = {"gold_standard_blank=0_noise=0.05": b0.sel(config="gold_standard"),
              "two_stage_blank=0_noise=0.05": b1.sel(config="two_stage", sim_seed=[0, 1], train_seed=[0, 1])}
    for label, earlier in shared.items():
        np.testing.assert_array_equal(ds["V_rest_R2"].sel(config=label).values, earlier["V_rest_R2"].values)
        np.testing.assert_array_equal(ds["run_id"].sel(config=label).values, earlier["run_id"].values)
    cell = fs.open_block(six.path).factorial.sel(arm="gold_standard", blank_fraction=0.5, noise_level=0.05)
    assert cell["label"].item() == "gold_standard_blank=0.5_noise=0.05"
    assert np.isfinite(np.diagonal(cell["V_rest_R2"].squeeze("ground_truth").values)).all()
    missing = fs.open_block(six.path).factorial.sel(arm="two_stage", blank_fraction=0.5)  # not in the plan
    assert np.isnan(missing["V_rest_R2"].values).all()


def test_clear_errors(blocks, tmp_path):
    _, b1 = blocks
    with pytest.raises(FileNotFoundError, match="no block file"):
        fs.open_block(tmp_path / "block9.nc")
    with pytest.raises(FileNotFoundError, match="not a finished run folder .*config.json"):
        fs.open_run(tmp_path)
    with pytest.raises(KeyError, match=r"no run of 'two_stage' with sim_seed=7.*runs: \(0, 0\)"):
        fs.open_block(b1.path).run("two_stage", 7, 7)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        fs.nope  # noqa: B018


def test_committed_small_examples_open_with_their_median_runs():
    """reports/examples/small: what the explore notebook tours (blocks 0 and 1, the median run of each)."""
    from conftest import REPO

    from flyvis_study.integrity import verify
    from flyvis_study.report.html import report_problems

    folder = REPO / "reports" / "examples" / "small"
    standard, two_stage = fs.open_block(folder / "block0.nc"), fs.open_block(folder / "block1.nc")
    assert len(standard.runs) == len(two_stage.runs) == 4
    for block in (standard, two_stage):
        run = block.median_run()
        assert verify(run.path / "run.nc") is None  # committed bytes match their checksum
        assert run.config.preset == "small" and run.metrics["connectivity_R2"] == pytest.approx(
            float(block.runs.set_index("run_id").loc[run.path.name, "connectivity_R2"]), abs=1e-9)
        rec = run.recovered
        assert rec["embedding"].shape == (1203, 2) and rec["W_corrected"].shape == rec["W_true"].shape
        assert np.isfinite(run.trajectory["connectivity_r2"]).all()
        model = run.model()
        assert model.embedding.shape == (1203, 2)
    comparison = fs.compare(standard, two_stage, "V_rest_R2")
    assert comparison.n_pairs == 4
    for page in ("block0.html", "block1.html", "study_summary.html", "index.html"):
        assert report_problems((folder / page).read_text()) == [], page
