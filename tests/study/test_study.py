"""Run specs, run files, failure recording, kill-and-resume, Dask execution."""

import numpy as np
import pytest
import torch
import xarray as xr
from conftest import FAST

from flyvis_study.config import ConfigError
from flyvis_study.study import run as study_run
from flyvis_study.study.record import NETCDF_ENGINE
from flyvis_study.study.run import run_one
from flyvis_study.study.runner import SchedulerError, make_client, run_many
from flyvis_study.study.spec import RunSpec, grid_specs, suggest_seeds
from flyvis_study.train.schedule import log_iterations


def test_seed_modes_are_deterministic_and_shared_across_blocks():
    assert suggest_seeds(3, "generalisation") == (3, 3)
    assert suggest_seeds(3, "robustness") == (0, 3)
    assert suggest_seeds(3, "robustness", seed_base=10) == (10, 13)
    a = grid_specs(0, {"gold_standard": {}}, 4, base_config="gold_standard.yaml")
    b = grid_specs(1, {"two_stage": {}}, 4)
    assert [(s.sim_seed, s.train_seed) for s in a] == [(s.sim_seed, s.train_seed) for s in b]
    both = grid_specs(1, {"x": {}}, 4, seed_mode="both")
    assert [s.seed_mode for s in both] == ["generalisation", "robustness"] * 2
    custom = grid_specs(1, {"x": {}}, 0, sim_seeds=[5, 5], train_seeds=[1, 2])
    assert [(s.sim_seed, s.train_seed, s.seed_mode) for s in custom] == [(5, 1, "custom"), (5, 2, "custom")]
    with pytest.raises(ValueError, match="seed_mode"):
        grid_specs(1, {"x": {}}, 2, seed_mode="sometimes")


def test_run_ids_stable_and_distinct():
    s1 = RunSpec(block=1, label="a", sim_seed=0, train_seed=0)
    assert s1.run_id == RunSpec(block=1, label="a", sim_seed=0, train_seed=0).run_id
    assert s1.run_id != RunSpec(block=1, label="a", sim_seed=0, train_seed=1).run_id
    assert s1.run_id != RunSpec(block=1, label="a", sim_seed=0, train_seed=0,
                                overrides={"training.alternate_lr_ratio": 0.05}).run_id


def test_invalid_grid_fails_before_any_run():
    with pytest.raises(ConfigError, match="alternate_lr_ratio"):
        grid_specs(3, {"bad": {"training.alternate_lr_ratio": 2.0}}, 2)


def test_run_one_writes_run_file_and_skips_when_done(tmp_path, dataset_root):
    spec = RunSpec(block=1, label="two_stage", overrides=FAST, sim_seed=0, train_seed=0, cache=str(dataset_root))
    path = run_one(spec, tmp_path)
    ds = xr.load_dataset(path, engine=NETCDF_ENGINE)
    n_iter = spec.config.n_iterations()
    assert dict(ds.sizes)["config"] == 1 and ds["step"].size == 2 * len(log_iterations(n_iter))
    assert set(np.unique(ds["traj_phase"].values)) == {0.0, 1.0}
    assert ds["status"].item() in {"converged", "partial", "failed"}
    assert np.isfinite(ds["connectivity_R2"].item()) and np.isfinite(ds["test_pearson"].item())
    mtime = (tmp_path / "runs" / spec.run_id / "run.nc").stat().st_mtime_ns
    assert run_one(spec, tmp_path) == path
    assert (tmp_path / "runs" / spec.run_id / "run.nc").stat().st_mtime_ns == mtime


def test_failed_run_is_recorded_not_raised(tmp_path, dataset_root):
    spec = RunSpec(block=1, label="diverges", sim_seed=0, train_seed=0, cache=str(dataset_root),
                   overrides={**FAST, "training.lr": 1e6, "training.lr_W": 1e6, "training.lr_embedding": 1e6})
    path = run_one(spec, tmp_path)
    ds = xr.load_dataset(path, engine=NETCDF_ENGINE)
    assert ds["status"].item() == "failed" and ds["failure_kind"].item() == "diverged"
    assert ds.attrs["failure_kind"] == "diverged"
    assert "non-finite" in ds["reason"].item()
    assert np.isnan(ds["connectivity_R2"].item())
    assert study_run.is_finished(spec, tmp_path)  # a diverged run is final: a rerun keeps it


@pytest.mark.slow
def test_infrastructure_failure_is_recorded_then_retried(tmp_path, dataset_root, monkeypatch):
    """An exception (here an I/O error) is recorded with its kind and recomputed on the next run_one."""
    spec = RunSpec(block=1, label="flaky", sim_seed=0, train_seed=0, cache=str(dataset_root), overrides=FAST)
    real = study_run.run_training

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(study_run, "run_training", disk_full)
    ds = xr.load_dataset(run_one(spec, tmp_path), engine=NETCDF_ENGINE)
    assert (ds["status"].item(), ds["failure_kind"].item()) == ("failed", "infrastructure")
    assert "No space left" in ds["reason"].item() and ds.attrs["torch_version"]
    assert not study_run.is_finished(spec, tmp_path)
    monkeypatch.setattr(study_run, "run_training", real)
    ds = xr.load_dataset(run_one(spec, tmp_path), engine=NETCDF_ENGINE)
    assert ds["failure_kind"].item() in ("", "unrecovered") and np.isfinite(ds["connectivity_R2"].item())
    assert study_run.is_finished(spec, tmp_path)


def test_failure_kinds_of_exceptions():
    assert study_run.failure_kind_of(MemoryError()) == "infrastructure"
    assert study_run.failure_kind_of(RuntimeError("CUDA error: an illegal memory access")) == "infrastructure"
    assert study_run.failure_kind_of(ValueError("bad data")) == "error"


def test_run_record_carries_the_log_rows_and_provenance(tmp_path, dataset_root):
    """run_training returns the metrics.log rows in memory (the run file is built from them, not re-read)."""
    import csv

    cfg = RunSpec(block=0, label="x", sim_seed=0, train_seed=0, overrides=FAST).config
    record = study_run.run_training(cfg, tmp_path / "run", progress=False, cache=dataset_root, plots=False)
    with open(tmp_path / "run" / "metrics.log") as fh:
        logged = list(csv.DictReader(fh))
    assert len(record["log_rows"]) == len(logged) > 0
    assert [(r["epoch"], r["iteration"], r["phase"]) for r in record["log_rows"]] == [
        (int(r["epoch"]), int(r["iteration"]), r["phase"]) for r in logged]
    assert record["provenance"]["device"] == "cpu"


@pytest.mark.slow
def test_kill_and_resume_does_not_recompute_finished_runs(tmp_path, dataset_root, monkeypatch):
    import flyvis_study.study.run as run_module

    specs = grid_specs(1, {"x": FAST}, 3, cache=str(dataset_root))
    calls = []
    real = run_module.run_training

    def killed_on_third(cfg, *args, **kwargs):
        calls.append(cfg.training.seed)
        if len(calls) == 3:
            raise KeyboardInterrupt("killed")
        return real(cfg, *args, **kwargs)

    monkeypatch.setattr(run_module, "run_training", killed_on_third)
    with pytest.raises(KeyboardInterrupt):
        run_many(specs, tmp_path, progress=False)
    done = [study_run.is_finished(s, tmp_path) for s in specs]
    assert done == [True, True, False]
    mtimes = [(tmp_path / "runs" / s.run_id / "run.nc").stat().st_mtime_ns for s in specs[:2]]
    calls.clear()

    def counted(cfg, *args, **kwargs):
        calls.append(cfg.training.seed)
        return real(cfg, *args, **kwargs)

    monkeypatch.setattr(run_module, "run_training", counted)
    paths = run_many(specs, tmp_path, progress=False)
    assert calls == [2]  # only the interrupted run was computed
    assert [(tmp_path / "runs" / s.run_id / "run.nc").stat().st_mtime_ns for s in specs[:2]] == mtimes
    assert len(paths) == 3


@pytest.mark.slow
def test_local_cluster_runs_match_serial_bitwise_at_equal_thread_counts(tmp_path, dataset_root):
    """The reproducibility promise on one machine: a run's numbers depend on its seeds and its
    intra-op thread count only (``study.run.run_threads``), not on where it ran. Serial runs at
    1 thread equal, bit for bit, the same runs on Dask workers of 1 thread each, whatever the CPU."""
    specs = grid_specs(0, {"gold_standard": FAST}, 2, base_config="gold_standard.yaml", cache=str(dataset_root),
                       threads=1)
    before = torch.get_num_threads()
    serial = run_many(specs, tmp_path / "serial", progress=False)
    assert torch.get_num_threads() == before  # restored after each run
    client = make_client(workers=2)
    try:
        assert len(client.scheduler_info()["workers"]) == 2
        parallel = run_many([s.model_copy(update={"threads": None}) for s in specs], tmp_path / "dask",
                            client=client, progress=False)  # the worker's own count: 1 thread each
    finally:
        client.cluster.close()
        client.close()
    for a, b in zip(serial, parallel):
        da, db = (xr.load_dataset(p, engine=NETCDF_ENGINE) for p in (a, b))
        assert "(1 threads)" in da.attrs["device_name"] and da.attrs["device_name"] == db.attrs["device_name"]
        for name in ("connectivity_R2", "V_rest_R2", "V_rest_R2_corrected", "tau_R2", "traj_conn"):
            np.testing.assert_array_equal(da[name].values, db[name].values, err_msg=name)


def test_unreachable_scheduler_is_a_clear_error():
    with pytest.raises(SchedulerError, match="tcp://127.0.0.1:1"):
        make_client(scheduler="tcp://127.0.0.1:1", timeout=2)
