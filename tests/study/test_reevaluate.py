"""Re-evaluation of finished runs from their final checkpoints (study.reevaluate)."""

import json
import shutil
import subprocess
import sys

import numpy as np
import xarray as xr
from conftest import FAST, REPO

from flyvis_study.evaluation.names import METRIC_NAMES
from flyvis_study.integrity import verify
from flyvis_study.study.record import NETCDF_ENGINE, RUN_DIMS, write_netcdf_atomic
from flyvis_study.study.reevaluate import reevaluate_folder
from flyvis_study.study.run import is_finished, run_one
from flyvis_study.study.spec import RunSpec

LATER = ("V_rest_R2_corrected", "V_rest_R2_field", "tau_R2_corrected", "V_rest_R2_field_all_corrected")


def _as_before_the_readout(path):
    """The run file as a run made before the corrected readout and the field metrics existed."""
    ds = xr.load_dataset(path, engine=NETCDF_ENGINE)
    for var in ds.variables.values():
        var.encoding = {}
    write_netcdf_atomic(ds.drop_vars([m for m in METRIC_NAMES if "corrected" in m or "field" in m]), path)


def test_reevaluation_restores_the_metrics_a_run_had_at_the_end_of_training(tmp_path, dataset_root):
    """Same checkpoint, same data: re-evaluation measures exactly what the end of training did;
    the run stays finished (its manifest follows metrics.json), the file names who re-evaluated
    it, and a run without its final checkpoint is left, with the reason."""
    spec = RunSpec(block=0, label="gold_standard", base_config="gold_standard.yaml", overrides=FAST, sim_seed=0,
                   train_seed=0, cache=str(dataset_root))
    path = run_one(spec, tmp_path)
    original = xr.load_dataset(path, engine=NETCDF_ENGINE)
    _as_before_the_readout(path)
    other = tmp_path / "runs" / "no_checkpoint"
    shutil.copytree(tmp_path / "runs" / spec.run_id, other)
    shutil.rmtree(other / "checkpoints")
    done = reevaluate_folder(tmp_path, cache=dataset_root, only_missing="V_rest_R2_corrected")
    assert done.done == [spec.run_id]
    assert "no final checkpoint (checkpoints/epoch_0.pt)" in done.skipped["no_checkpoint"]
    again = xr.load_dataset(path, engine=NETCDF_ENGINE)
    for name in LATER:
        assert np.isfinite(original[name].values).all()
        np.testing.assert_array_equal(again[name].values, original[name].values, err_msg=name)
    assert again[LATER[0]].dims == RUN_DIMS
    assert verify(path) is None and is_finished(spec, tmp_path)
    assert json.loads(again.attrs["reevaluated"])["git_commit"] == original.attrs["git_commit"]
    metrics = json.loads((tmp_path / "runs" / spec.run_id / "metrics.json").read_text())
    assert metrics["V_rest_R2_corrected"] == float(original["V_rest_R2_corrected"].item())
    with np.load(tmp_path / "runs" / spec.run_id / "recovered.npz") as rec:
        assert rec["V_rest_hat_corrected"].shape == rec["V_rest_hat"].shape
    assert reevaluate_folder(tmp_path, cache=dataset_root, only_missing="V_rest_R2_corrected").done == []


def test_cli_reevaluate_names_a_folder_without_runs(tmp_path):
    out = subprocess.run([sys.executable, "-m", "flyvis_study.cli", "reevaluate", str(tmp_path)],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode != 0 and out.stderr.strip().splitlines()[-1].endswith("not a results folder (no runs/)")
