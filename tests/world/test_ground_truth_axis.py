"""The block parameter ground_truth_models: a third seed-like axis, the runs' ground_truth coordinate."""

import json

import numpy as np
import pytest
import xarray as xr
from conftest import FAST as CONFTEST_FAST
from conftest import REPO, fake_flyvis_root

from flyvis_study import run_block
from flyvis_study.study.blocks import BlockParameterError, plan_block
from flyvis_study.study.comparison import paired_comparison
from flyvis_study.study.record import NETCDF_ENGINE
from flyvis_study.study.results import runs_table, with_ground_truth_axis

FAST = {**CONFTEST_FAST, "simulation.n_frames": 600}


def test_each_run_is_planned_on_each_network(tmp_path, monkeypatch):
    fake_flyvis_root(tmp_path, "flow/0000/001")
    monkeypatch.setenv("FLYVIS_ROOT_DIR", str(tmp_path))
    specs = plan_block(0, {"replicates": 2, "ground_truth_models": ["flow/0000/000", "flow/0000/001"]})
    assert [(s.ground_truth, s.sim_seed) for s in specs] == [
        ("flow/0000/000", 0), ("flow/0000/000", 1), ("flow/0000/001", 0), ("flow/0000/001", 1)]
    assert all(s.config.simulation.ground_truth.source == "flyvis" for s in specs)
    assert specs[0].run_id.startswith("flow_0000_000__s0_t0__")  # content-keyed: the network, seeds, digest
    assert len({s.run_id for s in specs}) == 4
    assert all(s.overrides == {} for s in specs)  # the network is an axis, not a config change
    default = plan_block(0, {"replicates": 2})
    assert [s.ground_truth for s in default] == ["synthetic/seed0"] * 2
    assert default[0].run_id.startswith("s0_t0__")


@pytest.mark.parametrize("value,needle", [
    (["flow/0000/000", "flow/0000/000"], "each model id once"),
    (["flow/0000/042"], "FLYVIS_ROOT_DIR"),
    (["flow-1"], "is not a flyvis model id"),
    ([3], "a list of flyvis model ids"),
])
def test_bad_ground_truth_models_are_one_line_before_any_run(value, needle, monkeypatch):
    monkeypatch.delenv("FLYVIS_ROOT_DIR", raising=False)
    with pytest.raises(BlockParameterError) as err:
        plan_block(1, {"ground_truth_models": value})
    text = str(err.value)
    assert "ground_truth_models" in text and needle in text and "\n" not in text


@pytest.mark.slow
def test_a_block_over_two_networks_records_and_pairs_on_the_ground_truth(tmp_path, dataset_root, monkeypatch):
    fake_flyvis_root(tmp_path / "flyvis", "flow/0000/001")
    monkeypatch.setenv("FLYVIS_ROOT_DIR", str(tmp_path / "flyvis"))
    params = {"replicates": 1, "overrides": FAST, "out_dir": str(tmp_path / "out"), "cache_dir": str(dataset_root),
              "ground_truth_models": ["flow/0000/000", "flow/0000/001"]}
    result = run_block(0, params, progress=False)
    ds = xr.load_dataset(result.path, engine=NETCDF_ENGINE)
    assert list(ds["ground_truth"].values) == ["flow/0000/000", "flow/0000/001"]
    assert ds["connectivity_R2"].dims == ("config", "ground_truth", "sim_seed", "train_seed")
    runs = runs_table(ds)
    assert sorted(runs["ground_truth"]) == ["flow/0000/000", "flow/0000/001"] and len(runs) == 2
    for path in result.run_files:  # every run file names its network, by coordinate and in its config
        run = xr.load_dataset(path, engine=NETCDF_ENGINE)
        model = str(run["ground_truth"].item())
        assert json.loads(run["config_json"].item())["simulation"]["ground_truth"]["model"] == model
    # the two networks are different worlds: different data, different numbers
    assert runs["test_pearson"].nunique() == 2
    assert result.statistics.loc["gold_standard", "n_runs"] == 2
    c = paired_comparison(ds, ds, "connectivity_R2")
    assert c.n_pairs == 2 and sorted(c.ground_truths) == ["flow/0000/000", "flow/0000/001"]
    assert c.pairs == [(0, 0), (0, 0)] and c.mean_difference == 0
    log = (tmp_path / "out" / "gold_standard_analysis.md").read_text()
    assert log.count("## Iter") == 2 and "ground_truth=flow/0000/001" in log


def test_files_from_before_the_axis_get_it_on_reading(tmp_path):
    """A block file as written before the axis existed (the committed block 0 without its
    ground_truth dimension) gets it on reading, from its stored configs."""
    committed = xr.load_dataset(REPO / "reports" / "examples" / "small" / "block0.nc", engine=NETCDF_ENGINE)
    committed.isel(ground_truth=0, drop=True).to_netcdf(tmp_path / "block0.nc", engine=NETCDF_ENGINE)
    old = xr.load_dataset(tmp_path / "block0.nc", engine=NETCDF_ENGINE)
    assert "ground_truth" not in old.dims
    ds = with_ground_truth_axis(old)
    assert list(ds["ground_truth"].values) == ["synthetic/seed0"]
    assert ds["connectivity_R2"].dims == ("config", "ground_truth", "sim_seed", "train_seed")
    assert ds["summary"].dims == old["summary"].dims  # statistics keep their own dims
    np.testing.assert_array_equal(runs_table(ds)["connectivity_R2"], runs_table(old)["connectivity_R2"])
    assert with_ground_truth_axis(ds) is ds
