"""The results API (open_block, open_run, compare) on tiny blocks made here."""

import json

import matplotlib
import numpy as np
import pytest
import torch

import flyvis_study as fs
from flyvis_study.study.blocks import run_block
from flyvis_study.study.comparison import paired_comparison
from flyvis_study.study.statistics import config_statistics
from flyvis_study.world.dataset import get_dataset

matplotlib.use("Agg")

FAST = {"training.iterations_fraction": 0.004, "evaluation.gmm_components": 10, "evaluation.rollout_frames": 50,
        "evaluation.test_frames": 200}


@pytest.fixture(scope="module")
def blocks(tmp_path_factory, dataset_root):
    out = tmp_path_factory.mktemp("access")
    common = {"overrides": FAST, "cache_dir": str(dataset_root), "out_dir": str(out)}
    b0 = run_block(0, {**common, "replicates": 2}, progress=False)
    b1 = run_block(1, {**common, "replicates": 3}, progress=False)
    return b0, b1


def test_open_block_has_the_dataset_runs_and_statistics(blocks):
    _, b1 = blocks
    block = fs.open_block(b1.nc_path)
    assert block.number == 1 and block.configs == ["two_stage_default"]
    assert len(block.runs) == 3 and set(block.runs["sim_seed"]) == {0, 1, 2}
    np.testing.assert_allclose(block.statistics["connectivity_R2_mean"],
                               config_statistics(b1.dataset)["connectivity_R2_mean"])
    assert block.ds["traj_conn"].dims == ("config", "ground_truth", "sim_seed", "train_seed", "step")
    assert block.ground_truths == ["synthetic/seed0"]  # a file from before the axis gets it on reading


def test_median_run_and_run_contents(blocks, dataset_root):
    _, b1 = blocks
    block = fs.open_block(b1.nc_path)
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
    same = block.run("two_stage_default", int(run.config.simulation.seed), int(run.config.training.seed))
    assert same.path == run.path


def test_every_panel_draws(blocks):
    run = fs.open_block(blocks[1].nc_path).median_run()
    labels = [line.get_label() for line in run.plot_trajectory().axes[0].lines]
    assert [x for x in labels if not x.startswith("_")] == ["conn", "V_rest", "tau"]
    assert len(run.plot_recovered().axes) == 3
    assert run.plot_embedding().axes[0].collections
    functions = run.plot_functions()
    assert len(functions.axes) == 2 and len(functions.axes[0].lines) > 10
    assert run.plot_loss().axes[0].lines
    assert fs.open_block(blocks[1].nc_path).plot_metric("V_rest_R2").axes[0].collections


def test_compare_is_the_paired_comparison(blocks):
    b0, b1 = blocks
    c = fs.compare(b0.nc_path, fs.open_block(b1.nc_path), "V_rest_R2")
    expected = paired_comparison(b0.dataset, b1.dataset, "V_rest_R2")
    assert c["n_pairs"] == 2 and c["pairs"] == [[0, 0], [1, 1]]
    assert json.dumps(c, sort_keys=True) == json.dumps(expected, sort_keys=True)


def test_clear_errors(blocks, tmp_path):
    _, b1 = blocks
    with pytest.raises(FileNotFoundError, match="no block file"):
        fs.open_block(tmp_path / "block9.nc")
    with pytest.raises(FileNotFoundError, match="not a finished run folder .*config.json"):
        fs.open_run(tmp_path)
    with pytest.raises(KeyError, match=r"no run of 'two_stage_default' with sim_seed=7.*runs: \(0, 0\)"):
        fs.open_block(b1.nc_path).run("two_stage_default", 7, 7)
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
    assert comparison["n_pairs"] == 4
    for page in ("block0.html", "block1.html", "study_summary.html", "index.html"):
        assert report_problems((folder / page).read_text()) == [], page
