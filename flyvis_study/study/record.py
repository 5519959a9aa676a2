"""The one-run xarray Dataset (run file) and its atomic netCDF write.

A run file holds the run's record: every metric (NaN when not measured), its status,
failure kind and reason, ``metric_failures`` (JSON {evaluation section: reason}), seeds,
resolved config, trajectory summaries and, over a ``step`` dimension, the in-loop R2
trajectory on the run's own iteration grid; its attributes carry the provenance
(``provenance.provenance``), the failure kind, ``stacked_with`` (how many runs its stack
started with, ``stacking.train``; 1 = trained alone) and ``schema_version``.

Factors are coordinates along ``config``: ``arm`` and one coordinate per axis of the cell
(``cell_coords``), so a block file selects by factor (``study.results.factorial``). A run is
keyed by content (``study.spec.run_id_of``) and may serve several blocks: a block assigns
its own label and factors to the runs it combines (``study.results.combine_runs``).

Schema versions: 1 (no ``schema_version`` attribute): run ids carried the block's label; 2:
content-keyed run ids and factor coordinates; 3: every arm named after its config file
(``gold_standard``, ``two_stage``, ...) in every block. Older files are read as version 3
(``study.schema.load_block``); ``flyvis-study migrate`` rewrites a folder of them once.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

from flyvis_study.atomic import atomic_path
from flyvis_study.evaluation.names import HEADLINE_METRICS, METRIC_NAMES, METRICS
from flyvis_study.study.spec import RunSpec

RUN_METRICS = (*HEADLINE_METRICS, "training_time_min")
RUN_DIMS = ("config", "ground_truth", "sim_seed", "train_seed")  # one cell per run
SCHEMA_VERSION = 3
# xarray's netCDF engine for every run and block file: netCDF4 (the Unidata C library) reads a
# run file (~90 variables over 4-5 dimensions) about 8x and writes it about 8x faster than
# h5netcdf, whose dimension-scale lookups dominate at that many variables (docs/development.md);
# both write netCDF-4/HDF5, so files written by either read with the other
NETCDF_ENGINE = "netcdf4"
RECORD_STRINGS = ("status", "failure_kind", "reason", "metric_failures", "seed_mode", "run_id", "config_json",
                  "overrides_json")


# every metric the evaluation measures (``evaluation.names.EVALUATION_SECTIONS``: a new metric is
# added there alone), then the run's sizes and timings
EXTRA_METRICS = (*(m for m in METRIC_NAMES if m not in RUN_METRICS), "data_generation_time_s", "eval_time_s",
                 "n_iterations_per_epoch", "joint_iterations", "n_epochs")


TRAJ_KEYS = (("connectivity_r2", "traj_conn"), ("vrest_r2", "traj_vrest"), ("tau_r2", "traj_tau"))


# ----------------------------------------------------------------------------- run files
def run_dataset(spec: RunSpec, record: dict, log_rows: list[dict], n_iter: int) -> xr.Dataset:
    """The one-run xarray Dataset: dims ``RUN_DIMS`` (config, ground_truth, sim_seed,
    train_seed), one cell, + (step) for the trajectory."""
    coords = {"config": [spec.label], "ground_truth": [spec.ground_truth], "sim_seed": [spec.sim_seed],
              "train_seed": [spec.train_seed], **cell_coords(spec)}
    dims = RUN_DIMS
    cell = (1,) * len(dims)

    def text(value) -> np.ndarray:
        return np.full(cell, str(value), dtype=object)

    data = {}
    for key in RUN_METRICS + EXTRA_METRICS:
        value = record.get(key)
        value = np.nan if value is None else float(value)
        data[key] = (dims, np.full(cell, value))
    record = {**record, "overrides_json": json.dumps(spec.overrides, sort_keys=True)}
    for key in RECORD_STRINGS:
        data[key] = (dims, text(record.get(key, "")))
    data["replicate"] = (dims, np.full(cell, spec.replicate, dtype=np.int64))
    for name in ("conn", "vrest", "tau"):
        traj = record.get("trajectory", {}).get(name, {})
        data[f"{name}_peak"] = (dims, np.full(cell, np.nan if traj.get("peak") is None else traj["peak"]))
        data[f"{name}_final"] = (dims, np.full(cell, np.nan if traj.get("final") is None else traj["final"]))
        data[f"{name}_trend"] = (dims, text(traj.get("trend", "")))
        data[f"{name}_peak_phase"] = (dims, text(traj.get("peak_phase", "")))
    steps = np.array([r["epoch"] * n_iter + r["iteration"] for r in log_rows], dtype=np.int64)
    if steps.size:
        tdims = dims + ("step",)
        series = lambda values: np.asarray(values, dtype=np.float64).reshape(cell + (-1,))  # noqa: E731
        for key, name in TRAJ_KEYS:
            data[name] = (tdims, series([r[key] for r in log_rows]))
        data["traj_epoch"] = (tdims, series([r["epoch"] for r in log_rows]))
        data["traj_phase"] = (tdims, series([r["phase"] == "V_rest" for r in log_rows]))
        coords["step"] = steps
    ds = xr.Dataset(data, coords=coords)
    for key in RUN_METRICS + EXTRA_METRICS:  # each metric's R2 definition, readout, units and meaning
        if key in METRICS:
            ds[key].attrs.update(METRICS[key].attrs())
    if steps.size:
        ds["traj_phase"].attrs["meaning"] = "0 = joint phase, 1 = V_rest-focus phase"
    ds.attrs.update({"file_kind": "run", "schema_version": SCHEMA_VERSION, "block": spec.block, "preset": spec.preset,
                     "base_config": spec.base_config, "overrides": json.dumps(spec.overrides),
                     "failure_kind": str(record.get("failure_kind", "")),
                     "stacked_with": int(record.get("stacked_with", 1)),
                     # the ground truth actually used: its source, and the dataset's content key
                     # (sha256 of the simulation config and the ground-truth parameters, world.dataset)
                     "ground_truth_source": str(record.get("ground_truth", "")),
                     "dataset_key": Path(str(record.get("dataset", ""))).name,
                     **{k: str(v) for k, v in record.get("provenance", {}).items()}})
    return ds


def cell_coords(spec: RunSpec) -> dict[str, tuple[str, list]]:
    """The cell's factor coordinates along ``config``: ``arm`` (the label when the spec names
    none) and one per axis level in ``spec.factors`` (named by ``Axis.factor``, never a run
    variable's name)."""
    out = {"arm": ("config", [spec.arm or spec.label])}
    out.update({name: ("config", [level]) for name, level in spec.factors.items()})
    return out


def write_netcdf_atomic(ds: xr.Dataset, path: Path) -> None:
    """Write ``ds`` to ``path`` atomically, with its ``.sha256`` sidecar (``flyvis_study.integrity``)."""
    with atomic_path(path, checksum=True) as tmp:
        ds.to_netcdf(tmp, engine=NETCDF_ENGINE)
