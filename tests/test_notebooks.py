"""Block notebooks end to end at the tiny preset (papermill, HTML, netCDF), and the CLI's bad-input errors."""

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest
import xarray as xr
from conftest import REPO

from flyvis_study.report.notebooks import BLOCK_NOTEBOOKS, execute_block, execute_summary

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
FAST = {"training.iterations_fraction": 0.004, "evaluation.gmm_components": 10, "evaluation.rollout_frames": 50,
        "evaluation.test_frames": 200}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_committed_clean(path):
    nb = nbformat.read(str(path), as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "strip outputs"
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and code[0] is tagged[0]
    assert papermill.inspect_notebook(str(path))  # parameters parse


def test_blocks_0_and_1_serial_then_summary(tmp_path, dataset_root):
    params = {"replicates": 2, "overrides": FAST, "cache_dir": str(dataset_root)}
    out0 = execute_block(0, tmp_path, params)
    out1 = execute_block(1, tmp_path, params)
    for out in (out0, out1):
        assert out["html"].stat().st_size > 50_000
        html = out["html"].read_text()
        assert html.count('src="data:image/png;base64') >= 3 and "Variance table" in html
        assert "run_block(BLOCK" not in html  # rendered without code input
    ds = xr.load_dataset(out1["nc"], engine="h5netcdf")
    assert set(ds["connectivity_R2"].dims) == {"config", "sim_seed", "train_seed"}
    assert list(ds["sim_seed"].values) == [0, 1] and list(ds["config"].values) == ["two_stage_default"]
    assert ds["summary"].sel(metric="connectivity_R2", statistic="n").item() == 2
    assert "step" in ds.dims and "traj_phase" in ds
    executed = nbformat.read(str(out1["ipynb"]), as_version=4)
    text = json.dumps(executed)
    assert "Paired comparison" in text and "mean_difference" in text  # block0 found in the same folder
    assert (tmp_path / "two_stage_default_analysis.md").read_text().count("## Iter") == 2
    summary = execute_summary(tmp_path)
    assert "Answer" in summary["html"].read_text()


def test_block_with_local_cluster_and_grid_parameter(tmp_path, dataset_root):
    params = {"replicates": 1, "workers": 2, "lr_ratio": [0.05, 0.2], "overrides": FAST,
              "cache_dir": str(dataset_root)}
    out = execute_block(3, tmp_path, params)
    ds = xr.load_dataset(out["nc"], engine="h5netcdf")
    assert sorted(ds["config"].values) == ["lr_ratio=0.05", "lr_ratio=0.2"]


def cli(*args):
    return subprocess.run([sys.executable, "-m", "flyvis_study.cli", *args], capture_output=True, text=True,
                          cwd=REPO)


@pytest.mark.parametrize("args,needle", [
    (["block", "9"], "block 9: unknown"),
    (["block", "1", "-p", "bogus=1"], "unknown parameter(s) bogus"),
    (["block", "1", "-p", "replicates"], "malformed -p value"),
    (["block", "1", "-p", "replicates=-2"], "replicates"),
    (["block", "3", "-p", "lr_ratio=[0.05, 3]"], "alternate_lr_ratio"),
    (["block", "1", "--preset", "huge"], "preset"),
    (["block", "1", "-p", "scheduler=tcp://127.0.0.1:1"], "not reachable"),
])
def test_cli_bad_input_one_line_nonzero(tmp_path, args, needle):
    res = cli(*args, "--out", str(tmp_path))
    assert res.returncode != 0
    assert needle in res.stderr
    assert not list(tmp_path.glob("block*"))  # nothing started


def test_cli_connectome_json():
    res = cli("connectome", "--extent", "8", "--json")
    counts = json.loads(res.stdout)
    assert counts["n_neurons"] == 13_741 and counts["n_edges"] == 434_112
    assert {"n_input_neurons", "n_cell_types", "n_edge_types", "n_offset_groups", "n_self_loops"} <= set(counts)
    assert cli("connectome", "--extent", "0").returncode != 0


def test_cli_train_writes_metrics(tmp_path, dataset_root):
    res = cli("train", "--config", "params/two_stage.yaml", "--preset", "tiny", "--sim-seed", "0", "--train-seed",
              "1", "--out", str(tmp_path / "run"), "--cache", str(dataset_root), "--no-progress",
              *sum((["-s", f"{k}={v}"] for k, v in FAST.items()), []))
    assert res.returncode == 0, res.stderr
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for key in ("connectivity_R2", "tau_R2", "V_rest_R2", "cluster_accuracy", "test_R2", "test_pearson",
                "training_time_min", "status"):
        assert key in m
    assert (tmp_path / "run" / "metrics.log").read_text().startswith("epoch,iteration,connectivity_r2")
    assert (tmp_path / "run" / "plots" / "run.png").stat().st_size > 10_000


def test_block_notebooks_cover_all_blocks():
    assert {p.name for p in NOTEBOOKS} >= set(BLOCK_NOTEBOOKS.values()) | {"explore.ipynb", "study_summary.ipynb"}
    assert Path(REPO / "notebooks" / "build_notebooks.py").is_file()
