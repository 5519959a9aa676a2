"""Dask beyond one process tree: a scheduler and two workers started as their own processes.

The block is run from the command line (``flyvis-study block 3 -p scheduler=tcp://...``), as
on a cluster; one worker is killed (SIGKILL to its process group: nanny and worker) while the
runs train. Dask reschedules the lost task on the surviving worker and the block completes
with every run measured; the CLI's live progress lines reach stderr.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import xarray as xr
from conftest import FAST

from flyvis_study.study.record import NETCDF_ENGINE
from flyvis_study.study.results import runs_table


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args, log, env=None):
    return subprocess.Popen([sys.executable, "-m", *args], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, env={**os.environ, **(env or {})})


def _stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def _wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return time.monotonic()
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


@pytest.mark.slow
@pytest.mark.parametrize("stack", [1, 2])
def test_block_on_separate_scheduler_and_workers_survives_a_killed_worker(tmp_path, dataset_root, stack):
    """stack 1: two runs, one task each; stack 2: four runs in two stacks, one task per stack."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("scheduler", "worker0", "worker1")}
    scheduler = _start(["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port),
                        "--no-dashboard"], logs["scheduler"],
                       env={"DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": "1.0"})  # one task per worker
    workers = []
    out = tmp_path / "reports"
    try:
        from distributed import Client

        _wait_for(lambda: subprocess.run([sys.executable, "-c", f"from distributed import Client; "
                                          f"Client('{address}', timeout='2s').close()"],
                                         capture_output=True).returncode == 0, 60, "the scheduler")
        workers = [_start(["distributed.cli.dask_worker", address, "--nthreads", "1", "--nworkers", "1",
                           "--no-dashboard", "--name", f"w{k}"], logs[f"worker{k}"]) for k in range(2)]
        with Client(address, timeout="10s") as client:
            client.wait_for_workers(2, timeout=60)
        t0 = time.monotonic()
        block = subprocess.Popen(
            [sys.executable, "-m", "flyvis_study.cli", "block", "3", "--preset", "tiny", "--out", str(out),
             "--progress-every", "1", "-p", f"scheduler={address}", "-p", f"replicates={stack}",
             "-p", f"stack={stack}",
             "-p", "lr_ratio=[0.05, 0.2]", "-p", f"overrides={json.dumps(FAST)}",
             "-p", f"cache_dir={dataset_root}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started = _wait_for(lambda: any(out.glob("runs/*/progress.json")) or block.poll() is not None, 600,
                            "a run to start training")
        assert block.poll() is None, block.stderr.read()
        with Client(address, timeout="10s") as client:
            names = {a: w["name"] for a, w in client.scheduler_info(n_workers=-1)["workers"].items()}
            busy = {names[a]: keys for a, keys in client.processing().items() if keys}
        assert sorted(busy) == ["w0", "w1"], busy  # one task (a run, or a stack of runs) on each worker
        victim = busy["w0"][0]
        assert victim.startswith("run-" if stack == 1 else "stack-") and (stack == 1 or victim.endswith("-x2"))
        victim_run = victim.removeprefix("run-") if stack == 1 else victim.removeprefix("stack-").rsplit("-x", 1)[0]
        _stop(workers[0])  # nanny and worker, as when a cluster node is lost
        stdout, stderr = block.communicate(timeout=900)
        finished = time.monotonic()
        print(f"training started {started - t0:.1f} s after launch; block finished {finished - t0:.1f} s "
              f"after launch, {finished - started:.1f} s after the worker was killed")
        assert block.returncode == 0, stderr[-2000:]
        ds = xr.load_dataset(out / "block3.nc", engine=NETCDF_ENGINE)
        runs = runs_table(ds)
        assert len(runs) == 2 * stack and sorted(set(runs["config"])) == ["lr_ratio=0.05", "lr_ratio=0.2"]
        # retried on the surviving worker, not lost (at this budget a run may end "unrecovered": a final,
        # measured outcome, not an infrastructure failure)
        assert not set(runs["failure_kind"]) & {"infrastructure", "error"}
        assert (out / "runs" / victim_run / "run.nc").is_file()
        assert np.isfinite(runs["connectivity_R2"].to_numpy(float)).all()
        n = 2 * stack
        assert f"runs {n}/{n} done" in stderr and f"runs 0/{n} done" in stderr
        assert "block3.html" in stdout
    finally:
        for proc in [*workers, scheduler]:
            _stop(proc)
        for log in logs.values():
            log.close()


def test_slurm_example_asks_for_one_gpu_per_worker():
    """tools/slurm_cluster.py renders a SLURM job script (nothing is submitted)."""
    pytest.importorskip("dask_jobqueue")
    import importlib.util

    from conftest import REPO

    spec = importlib.util.spec_from_file_location("slurm_cluster", REPO / "tools" / "slurm_cluster.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cluster = module.make_cluster("gpu", "lab", gpus_per_job=2, port=_free_port(), dashboard=":0",
                                  prologue=["source ~/venv/bin/activate"])
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#SBATCH --gres=gpu:2" in script and "#SBATCH -p gpu" in script and "#SBATCH -A lab" in script
    assert "--resources GPU=1" in script and "--nworkers 2" in script and "--nthreads 1" in script
    assert "source ~/venv/bin/activate" in script
