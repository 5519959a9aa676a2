"""One run end to end: dataset -> train -> evaluate -> run record (+ plots), and its run file.

``run_training(cfg, out_dir)`` writes into ``out_dir``: config.json, metrics.log, loss.npy,
coefficients.json, checkpoints/, plots/run.png, recovered.npz and metrics.json (written last,
atomically), and returns the run record in memory (metrics, status, failure kind, the
metrics.log rows, provenance).

``run_one(spec, out_root)`` is a study task: it runs a ``RunSpec`` into
``out_root/runs/<run_id>/`` and writes ``run.nc`` last and atomically. It never raises for a
failed run; the record says why, with a failure kind:

| failure_kind   | meaning                                              | on a rerun  |
|----------------|------------------------------------------------------|-------------|
| ""             | trained and evaluated (status converged or partial)  | kept        |
| diverged       | non-finite loss or parameters (status failed)        | kept        |
| unrecovered    | trained, but connectivity_R2 < 0.3 (status failed)   | kept        |
| infrastructure | out of memory, I/O, CUDA, a lost worker (exception)  | recomputed  |
| error          | any other exception (a bug or bad data)              | recomputed  |
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path

import numpy as np

from flyvis_study.atomic import write_json_atomic, write_text_atomic
from flyvis_study.config import RunConfig
from flyvis_study.evaluation.evaluate import evaluate, run_status
from flyvis_study.evaluation.names import HEADLINE_METRICS
from flyvis_study.evaluation.trajectory import trajectory_summary
from flyvis_study.provenance import provenance
from flyvis_study.study.record import run_dataset, write_netcdf_atomic
from flyvis_study.study.spec import RunSpec
from flyvis_study.train.loop import train
from flyvis_study.world.dataset import get_dataset

FINAL_FAILURES = ("diverged", "unrecovered")
RETRIED_FAILURES = ("infrastructure", "error")


def run_training(cfg: RunConfig, out_dir: str | Path, device: str = "cpu", progress: bool = True,
                 cache: str | Path | None = None, resume: bool = True, plots: bool = True) -> dict:
    """Train and evaluate one run; returns (and writes) its metrics record."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    dataset = get_dataset(cfg.simulation, root=cache, device=device, progress=progress)
    data_wait = time.perf_counter() - t0
    result = train(cfg, dataset, out_dir, device=device, progress=progress, resume=resume)
    n_iter = cfg.n_iterations(dataset.n_train)
    joint_iters = cfg.joint_iterations(dataset.n_train)
    record: dict = {
        "status": "failed", "reason": result.reason,
        "training_time_min": result.training_time_s / 60.0,
        "data_generation_time_s": dataset.meta["timing_s"]["total"],
        "data_wait_time_s": data_wait,
        "simulation_seed": cfg.simulation.seed, "training_seed": cfg.training.seed,
        "n_iterations_per_epoch": n_iter, "joint_iterations": joint_iters,
        "n_epochs": cfg.training.n_epochs, "dataset": str(dataset.path),
        "ground_truth": dataset.meta["ground_truth_source"], "device": device,
        "trajectory": trajectory_summary(result.log_rows), "log_rows": result.log_rows,
        "failure_kind": "diverged" if result.status != "ok" else "", "provenance": provenance(device),
    }
    if result.status == "ok":
        metrics, rec = evaluate(result.model, dataset, cfg, result.data)
        record.update(metrics)
        record["status"] = run_status(metrics, True)
        if record["status"] == "failed":
            record["failure_kind"] = "unrecovered"
            record["reason"] = record["reason"] or f"connectivity_R2 {metrics['connectivity_R2']:.3f} < 0.3"
        if plots:
            from flyvis_study.evaluation import figure as P

            fig = P.run_figure(result.model, dataset, rec, metrics, result.log_rows, result.loss, n_iter,
                               joint_iters, cfg.training.n_epochs, result.data.stats)
            P.save(fig, out_dir / "plots" / "run.png")
            np.savez_compressed(out_dir / "recovered.npz", embedding=result.model.embedding.detach().cpu().numpy(),
                                W_corrected=rec.W_corrected.astype(np.float32), tau_hat=rec.tau_hat.astype(np.float32),
                                V_rest_hat=rec.V_rest_hat.astype(np.float32))
    else:
        record.update({k: float("nan") for k in HEADLINE_METRICS})
    write_json_atomic(out_dir / "metrics.json", record)
    return record


def failure_kind_of(err: BaseException) -> str:
    """'infrastructure' for resource and environment failures, else 'error' (both are retried)."""
    text = str(err)
    if isinstance(err, (MemoryError, OSError, TimeoutError)) or "CUDA" in text or "out of memory" in text:
        return "infrastructure"
    if type(err).__name__ in ("KilledWorker", "CommClosedError"):
        return "infrastructure"
    return "error"


def run_one(spec: RunSpec, out_root: str | Path, progress: bool = False) -> str:
    """Run (or skip, if finished) one spec; returns the path of its ``run.nc``. Never raises for run errors.

    Process settings for training (freed memory kept, threads limited inside a Dask worker)
    are applied here, the task's entry point.
    """
    from flyvis_study.fast.allocator import keep_freed_memory, release_freed_memory

    out_root = Path(out_root)
    run_dir = out_root / "runs" / spec.run_id
    path = run_dir / "run.nc"
    if is_finished(spec, out_root):
        return str(path)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = spec.config
    _limit_threads_in_dask_worker()
    keep_freed_memory()
    try:
        record = run_training(cfg, run_dir, device=spec.device, progress=progress, cache=spec.cache)
    except Exception as err:  # noqa: BLE001 - a failed run is recorded, never lost
        record = {"status": "failed", "failure_kind": failure_kind_of(err), "reason": f"{type(err).__name__}: {err}",
                  "log_rows": [], "n_iterations_per_epoch": 1, "provenance": provenance(spec.device)}
        write_text_atomic(run_dir / "error.txt", traceback.format_exc())
    finally:
        release_freed_memory()
    record.update({"seed_mode": spec.seed_mode, "run_id": spec.run_id, "config_json": cfg.to_json()})
    write_netcdf_atomic(run_dataset(spec, record, record["log_rows"], int(record["n_iterations_per_epoch"])), path)
    return str(path)


def _limit_threads_in_dask_worker() -> None:
    """Inside a Dask worker, give torch only the worker's threads (no oversubscription)."""
    try:
        from dask.distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return
    import torch

    torch.set_num_threads(max(1, int(worker.state.nthreads)))


def is_finished(spec: RunSpec, out_root: str | Path) -> bool:
    """True if the run's file exists and its outcome is final (not a retried failure kind)."""
    path = Path(out_root) / "runs" / spec.run_id / "run.nc"
    if not path.is_file():
        return False
    import xarray as xr

    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            return ds.attrs.get("failure_kind", "") not in RETRIED_FAILURES
    except (OSError, ValueError):  # unreadable (truncated, not netCDF): compute it again
        return False
