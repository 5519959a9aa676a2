"""The fault suite: each fault a block meets, injected for real at the tiny preset, and what survives.

| fault                                   | expected outcome                                              |
|-----------------------------------------|---------------------------------------------------------------|
| runs of different lengths / divergence  | the block assembles on the union step grid and renders        |
| one evaluation section raises           | every other metric and the trajectory kept, reason recorded   |
| parameter recovery raises               | test metrics kept, failure kind "evaluation" (final)          |
| dataset bytes zeroed / file truncated   | one IntegrityWarning naming the file, regenerated, same data  |
| run file bytes changed / truncated      | one IntegrityWarning, moved aside, only that run recomputed   |
| recovered.npz truncated, metrics.log gone | the same, the warning naming that file                      |
| truncated last checkpoint               | one IntegrityWarning, resumed from the one before, same loss  |
| a task's worker dies (KilledWorker)     | that run failed (infrastructure), the others finish; retried  |
| a second block on the same folder       | one line naming the holder, exit 2, nothing computed          |
| a stale lock (dead owner)               | broken and taken                                              |
| a live generation in another namespace  | waited for, its temporary folder left alone                   |
| two processes generating one dataset    | one generates, the other reads its result                     |
"""

import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from conftest import FAST

from flyvis_study import run_block
from flyvis_study.config import load_run_config
from flyvis_study.integrity import IntegrityWarning, sidecar
from flyvis_study.locks import FileLock, LockHeld, holder, this_process
from flyvis_study.study import run as study_run
from flyvis_study.study.execute import BlockInUse
from flyvis_study.study.record import NETCDF_ENGINE
from flyvis_study.study.results import runs_table
from flyvis_study.study.runner import make_client, run_many
from flyvis_study.study.spec import RunSpec, grid_specs
from flyvis_study.study.statistics import block_dataset, config_statistics
from flyvis_study.train.checkpoints import checkpoint_path
from flyvis_study.train.loop import train
from flyvis_study.world.connectome import cached_connectome
from flyvis_study.world.dataset import dataset_key, get_dataset, resolve_ground_truth

DIVERGES = {**FAST, "training.lr": 1e6, "training.lr_W": 1e6, "training.lr_embedding": 1e6}


def _integrity_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, IntegrityWarning)]


# ----------------------------------------------------------------------------- lengths and divergence
@pytest.mark.slow
def test_block_with_one_divergence_and_mixed_epochs_assembles_and_renders(tmp_path, dataset_root):
    from flyvis_study.report.figures import trajectory_figure

    configs = {"epochs=1": {**FAST, "training.n_epochs": 1}, "epochs=2": {**FAST, "training.n_epochs": 2},
               "diverges": DIVERGES}
    specs = grid_specs(4, configs, 2, cache=str(dataset_root))
    paths = run_many(specs, tmp_path, progress=False)
    ds = block_dataset(paths, 4)
    lengths = np.isfinite(ds["traj_conn"]).sum("step").isel(ground_truth=0)
    one, two = (int(lengths.sel(config=c, sim_seed=0, train_seed=0)) for c in ("epochs=1", "epochs=2"))
    assert two == 2 * one > 0
    assert int(lengths.sel(config="diverges", sim_seed=0, train_seed=0)) < one  # stopped at the divergence
    st = config_statistics(ds)
    assert st.loc["diverges", "failed"] == 2 and st.loc["epochs=2", "n_runs"] == 2
    runs = runs_table(ds)
    assert list(runs[runs["config"] == "diverges"]["failure_kind"]) == ["diverged", "diverged"]
    assert np.isfinite(st.loc["epochs=1", "connectivity_R2_mean"])
    fig = trajectory_figure(ds)
    assert len(fig.axes) == 3 and all(ax.lines for ax in fig.axes[:2])


# ----------------------------------------------------------------------------- evaluation failures
def test_one_failed_evaluation_section_keeps_everything_else(tmp_path, dataset_root, monkeypatch):
    import flyvis_study.evaluation.evaluate as E

    def degenerate(*args, **kwargs):
        raise np.linalg.LinAlgError("singular covariance in the embedding GMM")

    monkeypatch.setattr(E, "cluster_metrics", degenerate)
    spec = RunSpec(block=1, label="x", sim_seed=0, train_seed=0, overrides=FAST, cache=str(dataset_root))
    ds = xr.load_dataset(study_run.run_one(spec, tmp_path), engine=NETCDF_ENGINE)
    assert np.isnan(ds["cluster_accuracy"].item()) and np.isnan(ds["cluster_NMI"].item())
    for kept in ("connectivity_R2", "tau_R2", "V_rest_R2", "test_pearson", "rollout_pearson"):
        assert np.isfinite(ds[kept].item()), kept
    assert np.isfinite(ds["traj_conn"].values).all() and ds["step"].size > 0
    failures = json.loads(ds["metric_failures"].item())
    assert list(failures) == ["clustering"] and "LinAlgError: singular covariance" in failures["clustering"]
    assert "clustering failed" in ds["reason"].item()
    assert ds["failure_kind"].item() in ("", "unrecovered")  # judged by conn_R2, not by the clustering
    assert study_run.is_finished(spec, tmp_path)
    assert (tmp_path / "runs" / spec.run_id / "plots" / "run.png").is_file()


def test_failed_parameter_recovery_keeps_the_test_metrics(tmp_path, dataset_root, monkeypatch):
    import flyvis_study.evaluation.evaluate as E

    def broken(*args, **kwargs):
        raise ValueError("no gain frames")

    monkeypatch.setattr(E, "recover_parameters", broken)
    spec = RunSpec(block=1, label="x", sim_seed=0, train_seed=0, overrides=FAST, cache=str(dataset_root))
    ds = xr.load_dataset(study_run.run_one(spec, tmp_path), engine=NETCDF_ENGINE)
    assert all(np.isnan(ds[m].item()) for m in ("connectivity_R2", "tau_R2", "V_rest_R2", "cluster_accuracy"))
    assert np.isfinite(ds["test_pearson"].item()) and np.isfinite(ds["traj_conn"].values).all()
    assert (ds["status"].item(), ds["failure_kind"].item()) == ("failed", "evaluation")
    assert set(json.loads(ds["metric_failures"].item())) == {"connectivity", "tau", "V_rest", "clustering"}
    assert study_run.is_finished(spec, tmp_path)  # final: a rerun would compute the same


# ----------------------------------------------------------------------------- integrity
@pytest.fixture()
def own_dataset(tmp_path, dataset_root):
    """A tiny dataset in its own cache folder (the ground-truth calibration copied from the shared one)."""
    import shutil

    sim = load_run_config("two_stage.yaml", preset="tiny").simulation
    get_dataset(sim, root=dataset_root)  # calibrates the shared ground truth once
    root = tmp_path / "cache"
    shutil.copytree(dataset_root / "ground_truth", root / "ground_truth")
    return sim, root, get_dataset(sim, root=root)


@pytest.mark.parametrize("damage", ["zeroed", "truncated", "manifest"])
def test_damaged_dataset_is_regenerated_with_one_warning(own_dataset, damage):
    sim, root, ds = own_dataset
    path = ds.path / "train_v.npy"
    original = path.read_bytes()
    if damage == "zeroed":  # same size, 4 KB of zeros in the middle
        with open(path, "r+b") as fh:
            fh.seek(len(original) // 2)
            fh.write(b"\0" * 4096)
        assert path.stat().st_size == len(original)
    elif damage == "truncated":
        path.write_bytes(original[: len(original) // 3])
    else:
        meta = json.loads((ds.path / "meta.json").read_text())
        del meta["files"]
        (ds.path / "meta.json").write_text(json.dumps(meta))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        again = get_dataset(sim, root=root)
    messages = _integrity_warnings(record)
    if damage == "manifest":  # a folder from before manifests: regenerated, not reported as damage
        assert not messages and "files" in json.loads((ds.path / "meta.json").read_text())
    else:
        assert len(messages) == 1 and "train_v.npy" in messages[0] and "regenerating" in messages[0]
    assert again.path == ds.path and path.read_bytes() == original  # regenerated identically
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        get_dataset(sim, root=root)
    assert not _integrity_warnings(record)


@pytest.mark.slow
def test_an_edited_ground_truth_cache_file_is_recalibrated_never_used(own_dataset):
    """The calibrated synthetic ground truth is cached with a sha256 sidecar: an edit that still
    parses (one resting potential moved by 0.5) is recalibrated with one warning naming the file,
    and the dataset read is the original one (same key, same truth)."""
    sim, root, ds = own_dataset
    (path,) = (root / "ground_truth").glob("*.json")
    original = path.read_bytes()
    edited = json.loads(original)
    edited["V_rest_type"][0] += 0.5
    path.write_text(json.dumps(edited))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        again = get_dataset(sim, root=root)
    messages = _integrity_warnings(record)
    assert len(messages) == 1 and path.name in messages[0] and "recalibrating" in messages[0], messages
    assert path.read_bytes() == original and again.path == ds.path
    np.testing.assert_array_equal(again.ground_truth.V_rest, ds.ground_truth.V_rest)


@pytest.mark.parametrize("name,damage", [("run.nc", "flipped"), ("run.nc", "truncated"),
                                         ("recovered.npz", "truncated"), ("metrics.log", "deleted")])
@pytest.mark.slow
def test_damaged_run_file_recomputes_that_run_only(tmp_path, dataset_root, name, damage):
    specs = grid_specs(1, {"x": FAST}, 2, cache=str(dataset_root))
    paths = run_many(specs, tmp_path, progress=False)
    before = [xr.load_dataset(p, engine=NETCDF_ENGINE) for p in paths]
    keep_mtime = os.stat(paths[1]).st_mtime_ns
    target = tmp_path / "runs" / specs[0].run_id / name
    data = bytearray(target.read_bytes())
    if damage == "flipped":
        data[len(data) // 2] ^= 0xFF
    elif damage == "truncated":
        data = data[: len(data) // 2]
    if damage == "deleted":
        target.unlink()
    else:
        target.write_bytes(bytes(data))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        again = run_many(specs, tmp_path, progress=False)
    messages = _integrity_warnings(record)
    assert len(messages) == 1 and str(target) in messages[0] and "recomputing run " + specs[0].run_id in messages[0]
    assert target.is_file() and np.load(again[0].replace("run.nc", "recovered.npz"))["embedding"].size
    assert (tmp_path / "runs" / specs[0].run_id / "run.nc.corrupt").is_file()
    assert os.stat(again[1]).st_mtime_ns == keep_mtime  # the good run was not recomputed
    redone = xr.load_dataset(again[0], engine=NETCDF_ENGINE)
    assert redone["connectivity_R2"].item() == pytest.approx(before[0]["connectivity_R2"].item(), abs=1e-6)
    assert study_run.is_finished(specs[0], tmp_path) and sidecar(again[0]).is_file()


def test_truncated_checkpoint_resumes_from_the_one_before(tmp_path, tiny_dataset):
    cfg = load_run_config("two_stage.yaml", preset="tiny", overrides=FAST)
    full = train(cfg, tiny_dataset, tmp_path / "run", progress=False)
    last = checkpoint_path(tmp_path / "run", 1)
    assert last.is_file() and sidecar(last).is_file()
    last.write_bytes(last.read_bytes()[:1000])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        resumed = train(cfg, tiny_dataset, tmp_path / "run", progress=False)
    messages = _integrity_warnings(record)
    assert len(messages) == 1 and "epoch_1.pt" in messages[0]
    np.testing.assert_array_equal(resumed.loss, full.loss)  # epoch 1 trained again from epoch 0's state
    assert [r["connectivity_r2"] for r in resumed.log_rows] == [r["connectivity_r2"] for r in full.log_rows]
    assert sidecar(last).is_file()  # the new epoch-1 checkpoint


# ----------------------------------------------------------------------------- lost workers
@pytest.mark.slow
def test_killed_worker_is_recorded_and_the_block_finishes(tmp_path, dataset_root):
    import dask
    from distributed.diagnostics.plugin import WorkerPlugin

    specs = grid_specs(0, {"gold_standard": FAST}, 3, base_config="gold_standard.yaml", cache=str(dataset_root))
    victim = f"run-{specs[1].run_id}"

    class KillOnStart(WorkerPlugin):
        """Kills the worker process as soon as it starts the victim's task (as the OOM killer would)."""

        def transition(self, key, start, finish, **kwargs):
            if key == victim and finish == "executing":
                os._exit(137)

    # one task per worker at a time, so only the victim is on a worker when it dies
    with dask.config.set({"distributed.scheduler.allowed-failures": 1, "distributed.scheduler.worker-saturation": 1.0}):
        client = make_client(workers=2)
    try:
        client.register_plugin(KillOnStart())
        paths = run_many(specs, tmp_path, client=client, progress=False)
    finally:
        client.cluster.close()
        client.close()
    runs = [xr.load_dataset(p, engine=NETCDF_ENGINE) for p in paths]
    assert (runs[1]["status"].item(), runs[1]["failure_kind"].item()) == ("failed", "infrastructure")
    assert "KilledWorker" in runs[1]["reason"].item()
    assert all(np.isfinite(r["connectivity_R2"].item()) for r in (runs[0], runs[2]))
    kept = [os.stat(p).st_mtime_ns for p in (paths[0], paths[2])]
    again = run_many(specs, tmp_path, progress=False)  # the rerun retries the lost run only
    assert np.isfinite(xr.load_dataset(again[1], engine=NETCDF_ENGINE)["connectivity_R2"].item())
    assert [os.stat(p).st_mtime_ns for p in (again[0], again[2])] == kept


# ----------------------------------------------------------------------------- one writer
HOLD = ("import sys, time; from flyvis_study.locks import FileLock; "
        "lock = FileLock(sys.argv[1], purpose='flyvis-study block 1 (test holder)'); lock.acquire(0); "
        "print('held', flush=True); time.sleep(120)")


def test_second_block_on_the_same_folder_stops_with_one_line(tmp_path):
    out = tmp_path / "reports"
    out.mkdir()
    holder_proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out / ".flyvis-study.lock")],
                                   stdout=subprocess.PIPE, text=True)
    try:
        assert holder_proc.stdout.readline().strip() == "held"
        cli = subprocess.run([sys.executable, "-m", "flyvis_study.cli", "block", "1", "--out", str(out),
                              "-p", "replicates=1"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
        assert cli.returncode == 2 and cli.stdout == ""
        lines = cli.stderr.strip().splitlines()
        assert len(lines) == 1 and f"pid {holder_proc.pid}" in lines[0] and "in use" in lines[0]
        with pytest.raises(BlockInUse, match="test holder"):
            run_block(1, {"replicates": 1, "out_dir": str(out), "overrides": FAST})
        assert not (out / "runs").exists() and not (out / "block1.ipynb").exists()  # nothing computed
    finally:
        holder_proc.kill()
        holder_proc.wait()
    assert holder(out / ".flyvis-study.lock") is None  # its owner is gone: stale


def _write_lock(path, **owner):
    path.write_text(json.dumps({**this_process(), "purpose": "test", "started": "earlier", **owner}))


def test_stale_and_foreign_locks(tmp_path):
    path = tmp_path / "x.lock"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    _write_lock(path, pid=int(dead.stdout))  # same host and namespace, PID gone
    with FileLock(path, timeout=0):
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert not path.exists()
    _write_lock(path, pid=1, pid_namespace="pid:[1]")  # another namespace, fresh heartbeat: live
    with pytest.raises(LockHeld, match="pid 1"):
        FileLock(path).acquire(timeout=0.3)
    old = time.time() - 3600
    os.utime(path, (old, old))  # its heartbeat stopped an hour ago: stale
    with FileLock(path, timeout=0):
        pass


def test_generation_in_another_namespace_is_waited_for_not_deleted(tmp_path, dataset_root):
    import shutil

    sim = load_run_config("two_stage.yaml", preset="tiny").simulation
    get_dataset(sim, root=dataset_root)
    root = tmp_path / "cache"
    shutil.copytree(dataset_root / "ground_truth", root / "ground_truth")
    key = dataset_key(sim, resolve_ground_truth(sim, cached_connectome(sim.extent), root))
    live_tmp = root / f"{key}.tmp-otherhost"
    live_tmp.mkdir()
    (live_tmp / "train_v.npy").write_bytes(b"partial")
    _write_lock(root / f"{key}.lock", pid=os.getpid(), pid_namespace="pid:[4026532999]")  # same PID, other ns
    with pytest.raises(LockHeld):
        get_dataset(sim, root=root, lock_timeout=1.0)
    assert (live_tmp / "train_v.npy").read_bytes() == b"partial"  # never deleted while its owner lives
    old = time.time() - 3600
    os.utime(root / f"{key}.lock", (old, old))  # the other generation died an hour ago
    ds = get_dataset(sim, root=root, lock_timeout=1.0)
    assert ds.n_train > 0 and not live_tmp.exists() and not (root / f"{key}.lock").exists()


GENERATE = ("import logging, sys; logging.basicConfig(level=logging.INFO, format='%(message)s'); "
            "from flyvis_study.config import load_run_config; from flyvis_study.world.dataset import get_dataset; "
            "ds = get_dataset(load_run_config('two_stage.yaml', preset='tiny').simulation, root=sys.argv[1]); "
            "print(ds.path)")


def test_two_processes_generate_one_dataset_once(tmp_path, dataset_root):
    import shutil

    sim = load_run_config("two_stage.yaml", preset="tiny").simulation
    get_dataset(sim, root=dataset_root)
    root = tmp_path / "cache"
    shutil.copytree(dataset_root / "ground_truth", root / "ground_truth")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", GENERATE, str(root)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert outs[0][0] == outs[1][0]  # the same folder
    assert sum(err.count("generating dataset") for _, err in outs) == 1
    assert len(list(root.glob("*.tmp-*"))) == 0 and torch.equal(
        torch.from_numpy(np.load(outs[0][0].strip() + "/train_v.npy")),
        torch.from_numpy(get_dataset(sim, root=dataset_root).array("train_v")[:].copy()))


EXAMPLES = Path(__file__).resolve().parents[2] / "reports" / "examples" / "small"


def _damaged(kind: str, folder: Path) -> Path:
    """A copy of the committed block 0 file, damaged as ``kind``, or a run file under a block's name."""
    good = (EXAMPLES / "block0.nc").read_bytes()
    path = folder / "block1.nc"
    if kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(len(good)))
    elif kind == "truncated":
        path.write_bytes(good[: len(good) // 3])
    elif kind == "zeroed":
        path.write_bytes(good[:1000] + bytes(len(good) // 2) + good[1000 + len(good) // 2:])
    else:  # a run file named like a block file
        run = next(p for p in sorted((EXAMPLES / "runs").glob("*/run.nc")))
        path.write_bytes(run.read_bytes())
    return path


@pytest.mark.parametrize("kind,message", [("random", "not a readable block file"),
                                          ("truncated", "not a readable block file"),
                                          ("zeroed", "not a readable block file"),
                                          ("run file", "a run file, not a block file")])
def test_a_damaged_or_wrong_kind_block_file_is_one_line_everywhere_before_any_run(tmp_path, kind, message):
    from typer.testing import CliRunner

    import flyvis_study as fs
    from flyvis_study.cli import app
    from flyvis_study.study.result_files import ResultFileError

    bad = _damaged(kind, tmp_path)
    with pytest.raises(ResultFileError, match=message) as err:
        fs.open_block(bad)
    assert "\n" not in str(err.value) and str(bad) in str(err.value)
    cli = CliRunner()
    for args in (["report", "--out", str(tmp_path)],
                 ["block", "1", "--out", str(tmp_path / "out"), "-p", f"compare_with={bad}"],
                 ["block", "5", "--out", str(tmp_path / "out"), "-p", f"best_from=[{bad}]"]):
        t0 = time.perf_counter()
        res = cli.invoke(app, args)
        lines = [line for line in res.output.splitlines() if line.strip()]
        assert res.exit_code == 2 and len(lines) == 1 and message in lines[0], (args, res.output)
        assert time.perf_counter() - t0 < 30  # refused at validation, not after training
    assert not (tmp_path / "out" / "runs").exists()


def test_a_failed_train_exits_non_zero_with_one_line(tmp_path, dataset_root):
    from typer.testing import CliRunner

    from flyvis_study.cli import app

    sets = [f"{k}={v}" for k, v in DIVERGES.items()]
    res = CliRunner().invoke(app, ["train", "--config", "gold_standard.yaml", "--out", str(tmp_path / "run"),
                                   "--cache", str(dataset_root), "--no-progress", "--no-plots",
                                   *[a for s in sets for a in ("-s", s)]])
    assert res.exit_code == 1, res.output
    assert res.output.splitlines()[-1].startswith(f"error: run {tmp_path / 'run'} failed (diverged): non-finite loss")


def _cli_block(out: Path, dataset_root: Path) -> subprocess.CompletedProcess:
    overrides = json.dumps(FAST)
    return subprocess.run([sys.executable, "-m", "flyvis_study.cli", "block", "1", "--preset", "tiny",
                           "--out", str(out), "-p", "replicates=2", "-p", f"overrides={overrides}",
                           "-p", f"cache_dir={dataset_root}", "--progress-every", "3600"],
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_repairs_reach_the_terminal_and_the_report_and_a_damaged_block_file_is_rebuilt(tmp_path, dataset_root):
    """Block 1 at tiny, 2 runs (2 replicates of its one config). Then one run file gets a
    flipped byte and the block file is truncated; the same command again: one 'repaired:'
    line on stderr naming the run file, the damaged run recomputed (the other reused), the
    block file rebuilt from the runs and the repair listed in it and in the HTML report's verdict."""
    out = tmp_path / "out"
    first = _cli_block(out, dataset_root)
    assert first.returncode == 0, first.stderr
    assert "repaired:" not in first.stderr
    run_files = sorted(out.glob("runs/*/run.nc"))
    assert len(run_files) == 2
    kept_mtime = run_files[1].stat().st_mtime_ns
    data = bytearray(run_files[0].read_bytes())
    data[len(data) // 2] ^= 0xFF
    run_files[0].write_bytes(bytes(data))
    block_file = out / "block1.nc"
    block_file.write_bytes(block_file.read_bytes()[:1000])
    again = _cli_block(out, dataset_root)
    assert again.returncode == 0, again.stderr
    repaired = [line for line in again.stderr.splitlines() if line.startswith("repaired:")]
    assert len(repaired) == 1 and f"{run_files[0]}: sha256 mismatch; recomputing run" in repaired[0], again.stderr
    assert run_files[1].stat().st_mtime_ns == kept_mtime  # the good run was reused
    ds = xr.load_dataset(block_file, engine=NETCDF_ENGINE)
    assert ds.attrs["file_kind"] == "block" and ds.sizes["sim_seed"] >= 1
    (logged,) = json.loads(ds.attrs["repairs"])
    assert logged == repaired[0].removeprefix("repaired: ")
    assert "Repaired while this block ran (1)" in (out / "block1.html").read_text()


@pytest.mark.slow
def test_a_report_killed_midway_loses_nothing_and_reruns(tmp_path):
    """``flyvis-study report`` killed while its notebook runs, then run again: the second run
    finishes; no half-written summary or index is ever left (each is written atomically)."""
    out = tmp_path / "out"
    out.mkdir()
    example = Path(__file__).resolve().parents[2] / "reports" / "examples" / "small"
    for name in ("block0.nc", "block1.nc"):
        shutil.copy(example / name, out / name)
    command = [sys.executable, "-m", "flyvis_study.cli", "report", "--out", str(out)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while not (out / "study_summary.ipynb").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)  # papermill writes the executed notebook as it goes: the kernel is running
    os.killpg(proc.pid, 9)  # the CLI, papermill and the kernel
    proc.wait()
    assert not (out / "study_summary.html").exists() and not (out / "index.html").exists()
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "Study summary" in (out / "study_summary.html").read_text()
    assert (out / "index.html").read_text().rstrip().endswith("</html>")
