"""One run end to end: dataset -> train -> evaluate -> run record (+ plots), and its run file.

``run_training(cfg, out_dir)`` writes into ``out_dir``: config.json, metrics.log, loss.npy,
coefficients.json, checkpoints/, plots/run.png, recovered.npz and metrics.json (written last,
atomically), and returns the run record in memory (metrics, status, failure kind, the
metrics.log rows, provenance).

``run_stack(specs, out_root)`` does the same for several specs trained as one stack
(``stacking.train``), writing each run's file as that run finishes.

``run_one(spec, out_root)`` is a study task: it runs a ``RunSpec`` into
``out_root/runs/<run_id>/`` and writes ``run.nc`` last and atomically. It never raises for a
failed run; the record says why, with a failure kind (``flyvis_study.failures``: diverged,
unrecovered and evaluation are kept on a rerun; infrastructure and error are recomputed).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import traceback
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from flyvis_study.atomic import write_json_atomic, write_text_atomic
from flyvis_study.config import RunConfig
from flyvis_study.evaluation import figure as P
from flyvis_study.evaluation.evaluate import evaluate
from flyvis_study.evaluation.names import HEADLINE_METRICS
from flyvis_study.evaluation.trajectory import trajectory_summary
from flyvis_study.failures import (
    FINAL_FAILURES,
    RETRIED_FAILURES,
    UNRECOVERED_CONN,
    FailureKind,
    Status,
    failure_kind_of,
    run_status,
)
from flyvis_study.fast.allocator import keep_freed_memory, release_freed_memory
from flyvis_study.integrity import manifest, repaired, sidecar, verify, verify_manifest
from flyvis_study.provenance import provenance
from flyvis_study.stacking.train import train_stack
from flyvis_study.study.record import NETCDF_ENGINE, run_dataset, write_netcdf_atomic
from flyvis_study.study.spec import RunSpec
from flyvis_study.train.loop import TrainingCut, TrainResult, train
from flyvis_study.world.dataset import get_dataset

__all__ = ["FINAL_FAILURES", "RETRIED_FAILURES", "failure_kind_of", "finish_run", "is_finished", "run_one",
           "run_stack", "run_training"]


def run_training(cfg: RunConfig, out_dir: str | Path, device: str = "cpu", progress: bool = True,
                 cache: str | Path | None = None, resume: bool = True, plots: bool = True,
                 stop_at: float | None = None, checkpoint_every_s: float | None = None) -> dict:
    """Train and evaluate one run; returns (and writes) its metrics record. ``stop_at``,
    ``checkpoint_every_s``: cut and resume (``train.loop.train``; a cut raises ``TrainingCut``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    dataset = get_dataset(cfg.simulation, root=cache, device=device, progress=progress)
    data_wait = time.perf_counter() - t0
    result = train(cfg, dataset, out_dir, device=device, progress=progress, resume=resume, stop_at=stop_at,
                   checkpoint_every_s=checkpoint_every_s)
    return finish_run(cfg, dataset, result, out_dir, device, data_wait, plots=plots)


def finish_run(cfg: RunConfig, dataset, result: TrainResult, out_dir: str | Path, device: str = "cpu",
               data_wait_s: float = 0.0, plots: bool = True, stacked_with: int = 1) -> dict:
    """Evaluate a trained run (``result``) and write its metrics.json (last), plots and recovered.npz;
    returns the record. ``stacked_with``: the number of runs its stack started with (1: alone)."""
    out_dir = Path(out_dir)
    n_iter = cfg.n_iterations(dataset.n_train)
    joint_iters = cfg.joint_iterations(dataset.n_train)
    record: dict = {
        "status": Status.FAILED.value, "reason": result.reason,
        "training_time_min": result.training_time_s / 60.0,
        "data_generation_time_s": dataset.meta["timing_s"]["total"],
        "data_wait_time_s": data_wait_s,
        "simulation_seed": cfg.simulation.seed, "training_seed": cfg.training.seed,
        "n_iterations_per_epoch": n_iter, "joint_iterations": joint_iters,
        "n_epochs": cfg.training.n_epochs, "dataset": str(dataset.path),
        "ground_truth": dataset.meta["ground_truth_source"], "device": device, "stacked_with": stacked_with,
        "trajectory": trajectory_summary(result.log_rows), "log_rows": result.log_rows,
        "failure_kind": (FailureKind.DIVERGED if result.diverged else FailureKind.NONE).value,
        "provenance": provenance(device),
    }
    if not result.diverged:
        metrics, rec = evaluate(result.model, dataset, cfg, result.data)
        failures = metrics.pop("metric_failures")
        record.update(metrics)
        conn = metrics["connectivity_R2"]
        status, kind = run_status(conn, diverged=False)
        record["status"], record["failure_kind"] = status.value, kind.value
        if kind == FailureKind.UNRECOVERED:
            record["reason"] = record["reason"] or f"connectivity_R2 {conn:.3f} < {UNRECOVERED_CONN}"
        elif kind == FailureKind.EVALUATION:
            record["reason"] = record["reason"] or "connectivity_R2 not measured"
        if plots and rec is not None:
            try:
                _save_run_plots(result, dataset, rec, metrics, cfg, n_iter, joint_iters, out_dir)
            except Exception as err:  # noqa: BLE001 - a figure never loses the metrics
                if failure_kind_of(err) == FailureKind.INFRASTRUCTURE:
                    raise
                failures["figure"] = f"{type(err).__name__}: {err}"
        record["metric_failures"] = failures
        if failures:
            note = "; ".join(f"{k} failed ({v})" for k, v in failures.items())
            record["reason"] = f"{record['reason']}; {note}" if record["reason"] else note
    else:
        record.update({k: float("nan") for k in HEADLINE_METRICS})
    write_json_atomic(out_dir / "metrics.json", record)
    return record


def _save_run_plots(result, dataset, rec, metrics, cfg, n_iter, joint_iters, out_dir: Path) -> None:
    """plots/run.png (the per-run figure) and recovered.npz (embedding, W*, tau, V_rest, and the truth)."""
    fig = P.run_figure(result.model, dataset, rec, metrics, result.log_rows, result.loss, n_iter,
                       joint_iters, cfg.training.n_epochs, result.data.stats)
    P.save(fig, out_dir / "plots" / "run.png")
    np.savez_compressed(out_dir / "recovered.npz", embedding=result.model.embedding.detach().cpu().numpy(),
                        W_corrected=rec.W_corrected.astype(np.float32), tau_hat=rec.tau_hat.astype(np.float32),
                        V_rest_hat=rec.V_rest_hat.astype(np.float32), W_true=dataset.ground_truth.W,
                        tau_true=dataset.ground_truth.tau, V_rest_true=dataset.ground_truth.V_rest)


# a run of a block or an exploration saves a within-epoch checkpoint every this many seconds, so
# a run killed mid-epoch (a session's end, a lost worker) resumes where it was, not at its epoch's
# start (bitwise as if never cut: train.loop); runs shorter than this never write one
CHECKPOINT_EVERY_S = 600.0


def run_one(spec: RunSpec, out_root: str | Path, progress: bool = False, stop_at: float | None = None,
            checkpoint_every_s: float | None = CHECKPOINT_EVERY_S) -> str:
    """Run (or skip, if finished) one spec; returns the path of its ``run.nc``. Never raises for run errors;
    a run cut at ``stop_at`` raises ``TrainingCut`` (not an error: it resumes; ``study.window``);
    ``checkpoint_every_s``: seconds between within-epoch checkpoints (None: at epoch ends only).

    Process settings for training (freed memory kept, the run's thread count: ``run_threads``)
    are applied here, the task's entry point.
    """
    out_root = Path(out_root)
    run_dir = out_root / "runs" / spec.run_id
    path = run_dir / "run.nc"
    if is_finished(spec, out_root):
        return str(path)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = spec.config
    keep_freed_memory()
    try:
        with run_threads(spec.threads):
            record = run_training(cfg, run_dir, device=spec.device, progress=progress, cache=spec.cache,
                                  stop_at=stop_at, checkpoint_every_s=checkpoint_every_s)
    except TrainingCut:
        raise
    except Exception as err:  # noqa: BLE001 - a failed run is recorded, never lost
        return record_raised_run(spec, out_root, err)
    finally:
        release_freed_memory()
    return write_run_file(spec, out_root, record)


def run_stack(specs: list[RunSpec], out_root: str | Path, progress: bool = False) -> list[str]:
    """Run (or skip, if finished) several specs as one stack (``stacking.train``); returns their
    ``run.nc`` paths in spec order. Never raises for run errors.

    The specs must share ``stacking.train.stack_key`` and a device (``study.runner`` groups
    them). Each run is evaluated and its run file written as soon as it finishes, so a killed
    stack loses at most each unfinished run's epoch in progress (the runs resume from their
    checkpoints). An error in one run's evaluation is that run's failure only; an error
    while training fails every run not yet written (recomputed by the next run, as in ``run_one``).
    """
    out_root = Path(out_root)
    paths: dict[int, str] = {}
    todo = []
    for i, spec in enumerate(specs):
        if is_finished(spec, out_root):
            paths[i] = str(out_root / "runs" / spec.run_id / "run.nc")
        else:
            todo.append(i)
    if len(todo) == 1:
        paths[todo[0]] = run_one(specs[todo[0]], out_root, progress)
        todo = []
    if not todo:
        return [paths[i] for i in range(len(specs))]
    keep_freed_memory()
    device = specs[todo[0]].device
    with run_threads(specs[todo[0]].threads):
        try:
            t0 = time.perf_counter()
            datasets = [get_dataset(specs[i].config.simulation, root=specs[i].cache, device=device, progress=progress)
                        for i in todo]
            data_wait = time.perf_counter() - t0
            run_dirs = [out_root / "runs" / specs[i].run_id for i in todo]

            def on_finish(k: int, result: TrainResult) -> None:
                spec = specs[todo[k]]
                try:
                    record = finish_run(spec.config, datasets[k], result, run_dirs[k], device, data_wait,
                                        stacked_with=len(todo))
                except Exception as err:  # noqa: BLE001 - one run's evaluation error is that run's failure
                    if failure_kind_of(err) == FailureKind.INFRASTRUCTURE:
                        raise
                    paths[todo[k]] = record_raised_run(spec, out_root, err)
                    return
                paths[todo[k]] = write_run_file(spec, out_root, record)

            train_stack([specs[i].config for i in todo], datasets, run_dirs, device=device, progress=progress,
                        on_finish=on_finish)
        except Exception as err:  # noqa: BLE001 - the stack's unfinished runs are recorded, never lost
            for i in todo:
                if i not in paths:
                    paths[i] = record_raised_run(specs[i], out_root, err)
        finally:
            release_freed_memory()
    return [paths[i] for i in range(len(specs))]


def record_raised_run(spec: RunSpec, out_root: str | Path, err: BaseException) -> str:
    """For ``err`` raised here while running ``spec``: its traceback in the run's error.txt, and
    the failed run's file (``record_failed_run``); returns its path. Call inside ``except``."""
    run_dir = Path(out_root) / "runs" / spec.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "error.txt", traceback.format_exc())
    return record_failed_run(spec, out_root, err)


def record_failed_run(spec: RunSpec, out_root: str | Path, err: BaseException) -> str:
    """Write the run file of a run that raised ``err`` (here or in a lost worker); returns its path.

    Its failure kind (infrastructure or error) makes the next ``run_one`` recompute it.
    """
    record = {"status": Status.FAILED.value, "failure_kind": failure_kind_of(err).value,
              "reason": f"{type(err).__name__}: {err}",
              "log_rows": [], "n_iterations_per_epoch": 1, "provenance": provenance(spec.device)}
    return write_run_file(spec, out_root, record)


RUN_DIR_FILES = ("metrics.json", "metrics.log", "config.json", "recovered.npz", "plots/run.png")


def write_run_file(spec: RunSpec, out_root: str | Path, record: dict) -> str:
    """``out_root/runs/<run_id>/run.nc`` from a run record (atomically); returns its path.

    Its attribute ``files`` (JSON) is the manifest (size, sha256) of the run directory's files
    that readers use (``RUN_DIR_FILES``, those present), checked by ``is_finished``.
    """
    run_dir = Path(out_root) / "runs" / spec.run_id
    path = run_dir / "run.nc"
    record = {**record, "seed_mode": spec.seed_mode, "run_id": spec.run_id, "config_json": spec.config.to_json(),
              "metric_failures": json.dumps(record.get("metric_failures") or {}, sort_keys=True)}
    ds = run_dataset(spec, record, record["log_rows"], int(record["n_iterations_per_epoch"]))
    ds.attrs["files"] = json.dumps(manifest(run_dir, [n for n in RUN_DIR_FILES if (run_dir / n).is_file()]))
    write_netcdf_atomic(ds, path)
    return str(path)


@contextlib.contextmanager
def run_threads(threads: int | None):
    """torch's intra-op thread count for one run: ``threads`` if given, else inside a Dask worker
    the worker's threads (no oversubscription), else the process's own; restored afterwards.
    The count is in the run's provenance (``device_name``). On one machine, runs with equal
    counts are bitwise equal, serial or on Dask (tested); the reductions' order depends on it."""
    if threads is None:
        try:
            from dask.distributed import get_worker  # noqa: PLC0415 - dask only inside a Dask worker

            threads = max(1, int(get_worker().state.nthreads))
        except (ImportError, ValueError):
            threads = None
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def is_finished(spec: RunSpec, out_root: str | Path) -> bool:
    """True if the run's file is intact and its outcome is final (not a retried failure kind).

    A run file that fails its checksum or cannot be read, or whose run directory holds a file
    that no longer matches the run file's manifest (``files``: missing, other size, other
    sha256), is moved aside (``run.nc.corrupt``) and the run recomputed (resuming from its last
    good checkpoint), with one ``IntegrityWarning`` naming the file. Run files from before
    checksums or manifests are trusted if readable.
    """
    path = Path(out_root) / "runs" / spec.run_id / "run.nc"
    if not path.is_file():
        return False
    reason, damaged = verify(path), path
    if reason in (None, "no checksum"):
        try:
            with xr.open_dataset(path, engine=NETCDF_ENGINE) as ds:
                final = ds.attrs.get("failure_kind", "") not in RETRIED_FAILURES
                files = json.loads(ds.attrs.get("files", "{}"))
        except (OSError, ValueError) as err:  # truncated, not netCDF
            reason = f"unreadable ({type(err).__name__})"
        else:
            bad = verify_manifest(path.parent, files)
            if bad is None:
                return final
            damaged, reason = path.parent / bad[0], bad[1]
    repaired(f"{damaged}: {reason}; recomputing run {spec.run_id}", stacklevel=2)
    os.replace(path, path.with_name("run.nc.corrupt"))
    sidecar(path).unlink(missing_ok=True)
    return False
