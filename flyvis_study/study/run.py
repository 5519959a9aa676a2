"""One training run end to end: dataset -> train -> evaluate -> run record (+ plots).

``run_training`` writes into ``out_dir``: config.json, metrics.log, loss.npy,
coefficients.json, checkpoints/, plots/run.png and metrics.json (written last, atomically:
a run directory is finished iff metrics.json exists).
"""

from __future__ import annotations

import json
import math
import time
import traceback
from pathlib import Path

import numpy as np

from flyvis_study.config import RunConfig
from flyvis_study.evaluation.evaluate import evaluate, run_status
from flyvis_study.evaluation.trajectory import trajectory_summary
from flyvis_study.study.record import run_dataset, write_netcdf_atomic
from flyvis_study.study.spec import RunSpec
from flyvis_study.train.loop import train
from flyvis_study.world.dataset import get_dataset

HEADLINE = ("connectivity_R2", "tau_R2", "V_rest_R2", "cluster_accuracy", "test_R2", "test_pearson")


def _json_safe(x):
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(_json_safe(obj), indent=1))
    tmp.replace(path)


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
    joint_iters = int(n_iter * cfg.training.alternate_joint_ratio) if cfg.training.alternate_training else n_iter
    record: dict = {
        "status": "failed", "reason": result.reason,
        "training_time_min": result.training_time_s / 60.0,
        "data_generation_time_s": dataset.meta["timing_s"]["total"],
        "data_wait_time_s": data_wait,
        "simulation_seed": cfg.simulation.seed, "training_seed": cfg.training.seed,
        "n_iterations_per_epoch": n_iter, "joint_iterations": joint_iters,
        "n_epochs": cfg.training.n_epochs, "dataset": str(dataset.path),
        "ground_truth": dataset.meta["ground_truth_source"], "device": device,
        "trajectory": trajectory_summary(result.log_rows),
    }
    if result.status == "ok":
        metrics, rec = evaluate(result.model, dataset, cfg, result.data)
        record.update(metrics)
        record["status"] = run_status(metrics, True)
        if record["status"] == "failed" and not record["reason"]:
            record["reason"] = f"connectivity_R2 {metrics['connectivity_R2']:.3f} < 0.3"
        if plots:
            from flyvis_study.evaluation import figure as P

            fig = P.run_figure(result.model, dataset, rec, metrics, result.log_rows, result.loss, n_iter,
                               joint_iters, cfg.training.n_epochs, result.data.stats)
            P.save(fig, out_dir / "plots" / "run.png")
            np.savez_compressed(out_dir / "recovered.npz", embedding=result.model.embedding.detach().cpu().numpy(),
                                W_corrected=rec.W_corrected.astype(np.float32), tau_hat=rec.tau_hat.astype(np.float32),
                                V_rest_hat=rec.V_rest_hat.astype(np.float32))
    else:
        record.update({k: float("nan") for k in HEADLINE})
    write_json_atomic(out_dir / "metrics.json", record)
    return record


def run_one(spec: RunSpec, out_root: str | Path, progress: bool = False) -> str:
    """Run (or skip, if finished) one spec; returns the path of its ``run.nc``. Never raises for run errors."""
    from flyvis_study.study.run import run_training

    out_root = Path(out_root)
    run_dir = out_root / "runs" / spec.run_id
    path = run_dir / "run.nc"
    if path.is_file():
        return str(path)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = spec.resolved()
    _limit_threads_in_dask_worker()
    try:
        record = run_training(cfg, run_dir, device=spec.device, progress=progress, cache=spec.cache)
        rows = _read_log(run_dir / "metrics.log")
        n_iter = int(record["n_iterations_per_epoch"])
    except Exception as err:  # noqa: BLE001 - a failed run is recorded, never lost
        record = {"status": "failed", "reason": f"{type(err).__name__}: {err}"}
        (run_dir / "error.txt").write_text(traceback.format_exc())
        rows, n_iter = [], 1
    record.update({"seed_mode": spec.seed_mode, "run_id": spec.run_id, "config_json": cfg.to_json()})
    write_netcdf_atomic(run_dataset(spec, record, rows, n_iter), path)
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


def _read_log(path: Path) -> list[dict]:
    import csv

    if not path.is_file():
        return []
    with open(path) as fh:
        return [{"epoch": int(r["epoch"]), "iteration": int(r["iteration"]),
                 "connectivity_r2": float(r["connectivity_r2"]), "vrest_r2": float(r["vrest_r2"]),
                 "tau_r2": float(r["tau_r2"]), "phase": r["phase"]} for r in csv.DictReader(fh)]


def is_finished(spec: RunSpec, out_root: str | Path) -> bool:
    return (Path(out_root) / "runs" / spec.run_id / "run.nc").is_file()
