"""Re-evaluate finished runs from their final checkpoints, without retraining.

A readout or metric added after a run was trained (e.g. the corrected readout of tau and
V_rest, ``evaluation.recovery``) is applied to it here: the run's config (config.json) and
the model of its last epoch's checkpoint (``checkpoints/epoch_{n_epochs - 1}.pt``) are loaded,
``evaluation.evaluate`` measures every metric again on the run's dataset (regenerated if it
is not cached: deterministic and keyed), and the run's metrics.json, recovered.npz and run
file are rewritten (atomically) with the new values. Training records (status, loss, the
metrics.log trajectory, times) are kept; the run file's attribute ``reevaluated`` names the
code that re-evaluated it (``provenance``). A run without its final checkpoint is reported,
not changed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from flyvis_study.atomic import write_json_atomic
from flyvis_study.config import validate
from flyvis_study.evaluation.evaluate import evaluate
from flyvis_study.evaluation.names import METRIC_NAMES
from flyvis_study.failures import FailureKind
from flyvis_study.integrity import manifest
from flyvis_study.provenance import provenance
from flyvis_study.study.record import NETCDF_ENGINE, RUN_DIMS, write_netcdf_atomic
from flyvis_study.study.run import RUN_DIR_FILES
from flyvis_study.train.checkpoints import checkpoint_path, load_checkpoint
from flyvis_study.train.loop import build_model
from flyvis_study.world.dataset import get_dataset
from flyvis_study.world.training_data import TrainingData


@dataclass
class Reevaluation:
    """What ``reevaluate_folder`` did: runs re-evaluated, and runs left as they were with why."""

    done: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"re-evaluated {len(self.done)} run(s)"]
        lines += [f"  left {run}: {why}" for run, why in sorted(self.skipped.items())]
        return "\n".join(lines)


def final_checkpoint(run_dir: Path, n_epochs: int) -> Path | None:
    """The checkpoint of the run's last epoch, or None."""
    path = checkpoint_path(run_dir, n_epochs - 1)
    return path if path.is_file() else None


def reevaluate_run(run_dir: str | Path, cache: str | Path | None = None, device: str = "cpu") -> dict:
    """Re-evaluate one finished run (module docstring); returns its new metrics.

    Raises ``ValueError`` (one line) for a run that cannot be re-evaluated: no run file, not
    trained to the end, or no final checkpoint.
    """
    run_dir = Path(run_dir)
    path = run_dir / "run.nc"
    if not path.is_file():
        raise ValueError("no run file (run.nc)")
    cfg = validate(json.loads((run_dir / "config.json").read_text()))
    record = json.loads((run_dir / "metrics.json").read_text())
    if record.get("failure_kind") == FailureKind.DIVERGED or not np.isfinite(record.get("connectivity_R2", np.nan)):
        raise ValueError(f"not evaluated at the end of training (status {record.get('status')})")
    ckpt = final_checkpoint(run_dir, cfg.training.n_epochs)
    if ckpt is None:
        raise ValueError(f"no final checkpoint (checkpoints/epoch_{cfg.training.n_epochs - 1}.pt)")
    dev = torch.device(device)
    dataset = get_dataset(cfg.simulation, root=cache, device=device, progress=False)
    model = build_model(cfg, dataset, dev)
    model.load_state_dict(load_checkpoint(ckpt, dev)["model"])
    data = TrainingData(dataset, dev, derivative_target=cfg.training.derivative_target, dt=cfg.simulation.dt)
    metrics, rec = evaluate(model, dataset, cfg, data)
    failures = metrics.pop("metric_failures")
    record.update({k: metrics[k] for k in METRIC_NAMES if k in metrics})
    record["metric_failures"] = {**record.get("metric_failures", {}), **failures}
    write_json_atomic(run_dir / "metrics.json", record)
    if rec is not None and (run_dir / "recovered.npz").is_file():
        with np.load(run_dir / "recovered.npz") as old:
            arrays = dict(old)
        arrays.update(tau_hat_corrected=rec.tau_hat_corrected.astype(np.float32),
                      V_rest_hat_corrected=rec.V_rest_hat_corrected.astype(np.float32),
                      silent_message=rec.silent_message.astype(np.float32))
        np.savez_compressed(run_dir / "recovered.npz", **arrays)
    ds = xr.load_dataset(path, engine=NETCDF_ENGINE)
    cell = tuple(ds.sizes[d] for d in RUN_DIMS)
    for name in METRIC_NAMES:
        if name in metrics:
            ds[name] = (RUN_DIMS, np.full(cell, float(metrics[name])))
    ds["metric_failures"] = (RUN_DIMS, np.full(cell, json.dumps(record["metric_failures"], sort_keys=True),
                                               dtype=object))
    ds.attrs["files"] = json.dumps(manifest(run_dir, [n for n in RUN_DIR_FILES if (run_dir / n).is_file()]))
    ds.attrs["reevaluated"] = json.dumps(provenance(device), sort_keys=True)
    for var in ds.variables.values():
        var.encoding = {}
    write_netcdf_atomic(ds, path)
    return metrics


def reevaluate_folder(folder: str | Path, cache: str | Path | None = None, device: str = "cpu",
                      only_missing: str | None = None) -> Reevaluation:
    """Re-evaluate every run under ``folder/runs``; ``only_missing``: a metric name, to skip
    the runs whose file already holds it (a resumable pass)."""
    out = Reevaluation()
    for run_dir in sorted(p for p in (Path(folder) / "runs").iterdir() if p.is_dir()):
        if only_missing and (run_dir / "run.nc").is_file():
            with xr.open_dataset(run_dir / "run.nc", engine=NETCDF_ENGINE) as ds:
                if only_missing in ds and np.isfinite(ds[only_missing].values).all():
                    continue
        try:
            reevaluate_run(run_dir, cache, device)
        except (ValueError, FileNotFoundError) as err:
            out.skipped[run_dir.name] = str(err)
            continue
        out.done.append(run_dir.name)
    return out
