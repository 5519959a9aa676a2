"""Study runs: run specs over seed x config grids, one run file per run, resumable.

A ``RunSpec`` names a base config file, dotted overrides, a preset and both seeds; its
``run_id`` is stable (label + seeds + a hash of everything that changes the numbers), so a
rerun of a block finds the runs it already finished. ``run_one`` trains and evaluates one
run into ``out_root/runs/<run_id>/`` and writes ``run.nc`` (netCDF, h5netcdf) last and
atomically; it never raises for a failed run: the failure (exception or divergence) is
recorded in the run file with its reason.

Seeds (both testing modes; deterministic in (replicate, seed_base), and shared by all
blocks by default so blocks can be compared on the same seed pairs):
- ``generalisation``: simulation.seed = seed_base + replicate, training.seed = seed_base + replicate;
- ``robustness``: simulation.seed = seed_base (fixed), training.seed = seed_base + replicate.
"""

from __future__ import annotations

import hashlib
import json
import traceback
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field

from .config import PARAMS_DIR, load_run_config

SEED_MODES = ("generalisation", "robustness")
HEADLINE_METRICS = ("connectivity_R2", "tau_R2", "V_rest_R2", "cluster_accuracy", "test_R2", "test_pearson",
                    "training_time_min")
EXTRA_METRICS = ("connectivity_slope", "connectivity_R2_raw", "connectivity_n_edges", "V_rest_R2_type_median",
                 "V_rest_R2_inliers", "tau_slope", "V_rest_slope", "cluster_ARI", "cluster_NMI",
                 "rollout_pearson", "rollout_rmse", "data_generation_time_s", "eval_time_s",
                 "n_iterations_per_epoch", "joint_iterations", "n_epochs")
TRAJ_KEYS = (("connectivity_r2", "traj_conn"), ("vrest_r2", "traj_vrest"), ("tau_r2", "traj_tau"))


class RunSpec(BaseModel):
    """One run of a study block."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    block: int = Field(ge=0)
    label: str = Field(min_length=1, description="config name within the block, e.g. 'lr_ratio=0.05'")
    base_config: str = "two_stage.yaml"
    overrides: dict[str, Any] = Field(default_factory=dict)
    preset: str = "tiny"
    sim_seed: int = Field(ge=0)
    train_seed: int = Field(ge=0)
    seed_mode: Literal["generalisation", "robustness", "custom"] = "generalisation"
    replicate: int = Field(0, ge=0)
    device: str = "cpu"
    cache: str | None = None

    def config_path(self) -> Path:
        path = Path(self.base_config)
        return path if path.is_absolute() or path.exists() else PARAMS_DIR / path

    def resolved(self):
        """The validated RunConfig of this run (seeds applied)."""
        overrides = dict(self.overrides)
        overrides.update({"simulation.seed": self.sim_seed, "training.seed": self.train_seed})
        return load_run_config(self.config_path(), preset=self.preset, overrides=overrides)

    @property
    def run_id(self) -> str:
        cfg = self.resolved()
        digest = hashlib.sha256(cfg.to_json().encode()).hexdigest()[:8]
        safe = "".join(ch if ch.isalnum() or ch in "._=-" else "_" for ch in self.label)
        return f"{safe}__s{self.sim_seed}_t{self.train_seed}__{digest}"


def suggest_seeds(replicate: int, mode: str, seed_base: int = 0) -> tuple[int, int]:
    """(simulation.seed, training.seed) of a replicate in a testing mode."""
    if mode == "generalisation":
        return seed_base + replicate, seed_base + replicate
    if mode == "robustness":
        return seed_base, seed_base + replicate
    raise ValueError(f"seed_mode {mode!r}: allowed: {', '.join(SEED_MODES)}")


def grid_specs(block: int, configs: dict[str, dict], replicates: int, *, base_config: str = "two_stage.yaml",
               preset: str = "tiny", seed_mode: str = "generalisation", seed_base: int = 0,
               sim_seeds: list[int] | None = None, train_seeds: list[int] | None = None,
               common_overrides: dict | None = None, device: str = "cpu", cache: str | None = None) -> list[RunSpec]:
    """Specs for every (config, replicate). ``configs`` maps a label to its dotted overrides.

    Explicit ``sim_seeds``/``train_seeds`` (equal length) replace the suggested seeds.
    All specs are validated (config resolved) here, before any run starts.
    """
    if sim_seeds is not None or train_seeds is not None:
        if sim_seeds is None or train_seeds is None or len(sim_seeds) != len(train_seeds):
            raise ValueError("sim_seeds and train_seeds must be given together, with equal lengths")
        pairs = list(zip(sim_seeds, train_seeds))
        modes = ["custom"] * len(pairs)
    else:
        if seed_mode == "both":
            modes = [SEED_MODES[r % 2] for r in range(replicates)]
        elif seed_mode in SEED_MODES:
            modes = [seed_mode] * replicates
        else:
            raise ValueError(f"seed_mode {seed_mode!r}: allowed: generalisation, robustness, both")
        pairs = [suggest_seeds(r, m, seed_base) for r, m in enumerate(modes)]
    specs = []
    for label, overrides in configs.items():
        merged = {**(common_overrides or {}), **overrides}
        for r, ((s, t), mode) in enumerate(zip(pairs, modes)):
            spec = RunSpec(block=block, label=label, base_config=base_config, overrides=merged, preset=preset,
                           sim_seed=int(s), train_seed=int(t), seed_mode=mode, replicate=r, device=device,
                           cache=cache)
            spec.resolved()  # validate before any compute
            specs.append(spec)
    return specs


# ----------------------------------------------------------------------------- run files
def run_dataset(spec: RunSpec, record: dict, log_rows: list[dict], n_iter: int) -> xr.Dataset:
    """The one-run xarray Dataset: dims (config, sim_seed, train_seed) + (step) for the trajectory."""
    coords = {"config": [spec.label], "sim_seed": [spec.sim_seed], "train_seed": [spec.train_seed]}
    dims = ("config", "sim_seed", "train_seed")
    data = {}
    for key in HEADLINE_METRICS + EXTRA_METRICS:
        value = record.get(key)
        value = np.nan if value is None else float(value)
        data[key] = (dims, np.full((1, 1, 1), value))
    record = {**record, "overrides_json": json.dumps(spec.overrides, sort_keys=True)}
    for key in ("status", "reason", "seed_mode", "run_id", "config_json", "overrides_json"):
        data[key] = (dims, np.array([[[str(record.get(key, ""))]]], dtype=object))
    data["replicate"] = (dims, np.full((1, 1, 1), spec.replicate, dtype=np.int64))
    for name in ("conn", "vrest", "tau"):
        traj = record.get("trajectory", {}).get(name, {})
        data[f"{name}_peak"] = (dims, np.full((1, 1, 1), np.nan if traj.get("peak") is None else traj["peak"]))
        data[f"{name}_final"] = (dims, np.full((1, 1, 1), np.nan if traj.get("final") is None else traj["final"]))
        data[f"{name}_trend"] = (dims, np.array([[[traj.get("trend", "")]]], dtype=object))
        data[f"{name}_peak_phase"] = (dims, np.array([[[traj.get("peak_phase", "")]]], dtype=object))
    steps = np.array([r["epoch"] * n_iter + r["iteration"] for r in log_rows], dtype=np.int64)
    if steps.size:
        tdims = dims + ("step",)
        for key, name in TRAJ_KEYS:
            data[name] = (tdims, np.array([r[key] for r in log_rows], dtype=np.float64)[None, None, None])
        data["traj_epoch"] = (tdims, np.array([r["epoch"] for r in log_rows], float)[None, None, None])
        data["traj_phase"] = (tdims, np.array([r["phase"] == "V_rest" for r in log_rows], float)[None, None, None])
        coords["step"] = steps
    ds = xr.Dataset(data, coords=coords)
    if steps.size:
        ds["traj_phase"].attrs["meaning"] = "0 = joint phase, 1 = V_rest-focus phase"
    ds.attrs.update({"block": spec.block, "preset": spec.preset, "base_config": spec.base_config,
                     "overrides": json.dumps(spec.overrides), "device": spec.device})
    return ds


def write_netcdf_atomic(ds: xr.Dataset, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    ds.to_netcdf(tmp, engine="h5netcdf")
    tmp.replace(path)


def run_one(spec: RunSpec, out_root: str | Path, progress: bool = False) -> str:
    """Run (or skip, if finished) one spec; returns the path of its ``run.nc``. Never raises for run errors."""
    from .run import run_training

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
