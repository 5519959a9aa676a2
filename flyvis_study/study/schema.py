"""Results written before schema 3, brought up to it: content-keyed run ids, factor coordinates, arm names.

Schema 1 (files without a ``schema_version`` attribute) named each run folder after the label
of the block that made it (``two_stage_default__s0_t0__bfa309e7``), so two blocks needing the
same run trained it twice, and a block's factors (arm, axis levels) were only in its labels.
Schema 2 (``study.record.SCHEMA_VERSION``) keys a run by content (``study.spec.run_id_of``:
``s0_t0__bfa309e7``) and stores the factors as coordinates along ``config``. Schema 3 names every
arm after its config file (``RENAMED_ARMS``: block 0's ``standard`` and block 6's
``standard_1_epoch`` are ``gold_standard``, blocks 1 and 5's ``two_stage_default`` is ``two_stage``),
in labels, ``arm`` coordinates and stored block parameters; run ids do not change.

``load_block(path)`` reads a block file of any schema (``upgrade_block``: an old block
Dataset gets its arm names and factor coordinates in memory); ``migrate_folder(folder)``
rewrites a folder on disk once (``flyvis-study migrate FOLDER``):

1. every block file's cells are re-planned from the block parameters stored in it
   (``stored_cells``: the block's definition, no label parsing) and its runs take their cell's
   factors;
2. every ``runs/<old id>/`` is renamed to its content key, computed from the resolved config
   stored in its run file. Two folders with one key hold the same config and seeds (the same
   run made twice by two blocks): the one whose run file has more variables (the more complete
   record, e.g. with the identity R2) is kept, takes over what only the other has (e.g. its
   ``checkpoints/``), and the other is removed;
3. every run file gets its new ``run_id``, arm names, factor coordinates and ``schema_version``
   (written atomically with a new checksum); every block file its new run ids (each from the
   resolved config stored beside it, so runs whose folders were not kept are renamed too), arm
   names, factor coordinates and ``schema_version``.

A migrated folder is left as it is by a second call.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from flyvis_study.config import RunConfig
from flyvis_study.study.blocks import BLOCKS
from flyvis_study.study.record import NETCDF_ENGINE, SCHEMA_VERSION, write_netcdf_atomic
from flyvis_study.study.result_files import read_result_file
from flyvis_study.study.results import save_block, with_ground_truth_axis
from flyvis_study.study.spec import Cell, run_id_of

# Schema 3: arm names of schema 1 and 2 files -> the name of their config file (params/<name>.yaml)
RENAMED_ARMS = {"standard": "gold_standard", "standard_1_epoch": "gold_standard", "two_stage_default": "two_stage"}


def schema_version(ds: xr.Dataset) -> int:
    """The file's schema version (1 when it has no ``schema_version`` attribute)."""
    return int(ds.attrs.get("schema_version", 1))


def renamed_label(label: str) -> str:
    """A cell label of schema 1 or 2 with its arm's schema-3 name: the arm alone
    (``standard``), the arm then axis levels (``standard_1_epoch_blank=0_noise=0.05``), or a
    replication's ``best(two_stage_default)``; any other label as it is."""
    if label.startswith("best(") and label.endswith(")"):
        return f"best({renamed_label(label[5:-1])})"
    for old, new in RENAMED_ARMS.items():
        rest = label[len(old) + 1:]
        if label == old:
            return new
        if label.startswith(old + "_") and "=" in rest.split("_")[0]:  # the next part is an axis level
            return f"{new}_{rest}"
    return label


def rename_arms(ds: xr.Dataset) -> xr.Dataset:
    """A run or block Dataset of schema 1 or 2 with schema 3's arm names (``RENAMED_ARMS``) in
    its labels, ``arm`` coordinate and stored ``parameters`` / ``configs`` attributes; the
    schema version is left to the caller."""
    out = ds.assign_coords(config=[renamed_label(str(c)) for c in ds["config"].values])
    if "arm" in out.coords:
        out = out.assign_coords(arm=("config", [renamed_label(str(a)) for a in out["arm"].values]))
    attrs = dict(out.attrs)
    if attrs.get("parameters"):
        stored = json.loads(attrs["parameters"])
        if isinstance(stored.get("arms"), list):
            stored["arms"] = [renamed_label(a) for a in stored["arms"]]
        for name in ("arm_levels", "arm_replicates"):
            if isinstance(stored.get(name), dict):
                stored[name] = {renamed_label(a): v for a, v in stored[name].items()}
        attrs["parameters"] = json.dumps(stored, separators=(",", ":"))
    if attrs.get("configs"):
        attrs["configs"] = json.dumps({renamed_label(k): v for k, v in json.loads(attrs["configs"]).items()})
    out.attrs = attrs
    return out


def stored_cells(ds: xr.Dataset) -> dict[str, Cell]:
    """{label: cell} of a block file, re-planned from its stored block number and parameters
    (``BlockDefinition.cells``). A replication block's (block 5) cells are named by its stored
    configs; labels the plan does not know are left out."""
    number = int(ds.attrs.get("block", -1))
    if number not in BLOCKS:
        return {}
    if schema_version(ds) < 3:
        ds = rename_arms(ds)
    block = BLOCKS[number]
    stored = json.loads(ds.attrs.get("parameters", "") or "{}")
    if block.replication:
        arm, base = block.arms[0], block.base_config
        configs = json.loads(ds.attrs.get("configs", "") or "{}")
        return {label: Cell(label, arm if label == arm else "best", base, over) for label, over in configs.items()}
    known = {name: value for name, value in stored.items() if name in block.parameters.model_fields}
    params = block.parameters.model_construct(**{**block.parameters.model_construct().model_dump(), **known})
    return {cell.label: cell for cell in block.cells(params)}


def factor_coords(labels: list[str], cells: dict[str, Cell]) -> dict[str, tuple[str, list]]:
    """The factor coordinates along ``config`` for ``labels``: ``arm`` (the label where no cell
    is known) and each axis of the cells (NaN where a cell lacks it)."""
    axes = list(dict.fromkeys(name for label in labels if label in cells for name in cells[label].factors))
    coords = {"arm": ("config", [cells[label].arm if label in cells else label for label in labels])}
    for name in axes:
        coords[name] = ("config", [cells[label].factors.get(name, np.nan) if label in cells else np.nan
                                   for label in labels])
    return coords


def upgrade_block(ds: xr.Dataset) -> xr.Dataset:
    """A block Dataset of an older schema in the current one, in memory (run ids unchanged):
    schema 3's arm names (``rename_arms``), then, for schema 1, the factor coordinates of
    schema 2. A current Dataset as it is."""
    version = schema_version(ds)
    if version >= SCHEMA_VERSION:
        return ds
    out = rename_arms(ds)
    if version < 2:
        labels = [str(c) for c in out["config"].values]
        out = out.assign_coords(factor_coords(labels, stored_cells(out)))
    out.attrs["schema_version"] = SCHEMA_VERSION
    return out


def load_block(path: str | Path) -> xr.Dataset:
    """A block file, its runs on ``RUN_DIMS`` (``with_ground_truth_axis``) with factor
    coordinates (``upgrade_block``), whatever its schema version."""
    return upgrade_block(with_ground_truth_axis(read_result_file(path, "block")))


@dataclass
class Migration:
    """What ``migrate_folder`` did: old run id -> new, duplicate folders removed, files rewritten."""

    renamed: dict[str, str] = field(default_factory=dict)
    removed: dict[str, str] = field(default_factory=dict)  # old id -> the kept run it duplicated
    run_files: int = 0
    block_files: int = 0

    def summary(self) -> str:
        return (f"{len(self.renamed)} run folders renamed to their content keys, {len(self.removed)} duplicate "
                f"run folders removed, {self.run_files} run files and {self.block_files} block files "
                f"rewritten to schema {SCHEMA_VERSION}")


def migrate_folder(folder: str | Path) -> Migration:
    """Rewrite a results folder (``blockN.nc`` and ``runs/``) to the current schema (module docstring)."""
    folder = Path(folder)
    done = Migration()
    blocks = {p: xr.load_dataset(p, engine=NETCDF_ENGINE) for p in sorted(folder.glob("block[0-9]*.nc"))}
    cell_of_run: dict[str, Cell] = {}
    for ds in blocks.values():
        if schema_version(ds) >= SCHEMA_VERSION:
            continue
        cells = stored_cells(ds)
        for label, run_id in _run_ids(rename_arms(ds)):
            if label in cells:
                cell_of_run.setdefault(run_id, cells[label])
    for run_dir in sorted(p for p in (folder / "runs").glob("*") if (p / "run.nc").is_file()):
        with xr.open_dataset(run_dir / "run.nc", engine=NETCDF_ENGINE) as ds:
            version = schema_version(ds)
            config_json = str(np.asarray(ds["config_json"].values).ravel()[0])
        if version >= SCHEMA_VERSION:
            continue
        if version == 2:  # keyed by content already: its arm names and version only
            _rewrite_run_file(run_dir / "run.nc", run_dir.name, None)
            done.run_files += 1
            continue
        old = run_dir.name
        new = run_id_of(RunConfig.model_validate_json(config_json))
        target = folder / "runs" / new
        if target.exists() and target != run_dir:
            if json.loads((target / "config.json").read_text()) != json.loads((run_dir / "config.json").read_text()):
                raise ValueError(f"{run_dir} and {target}: different configs under one content key")
            first = next(k for k, v in done.renamed.items() if v == new)
            if _n_variables(run_dir / "run.nc") > _n_variables(target / "run.nc"):  # the more complete record
                aside = target.with_name(target.name + ".duplicate")
                target.rename(aside)
                run_dir.rename(target)
                _rewrite_run_file(target / "run.nc", new, cell_of_run.get(old) or cell_of_run.get(first))
                run_dir, old, first = aside, first, old
                done.renamed[first] = new
                del done.renamed[old]
            for entry in run_dir.iterdir():  # what only the duplicate has, e.g. its checkpoints/
                if not (target / entry.name).exists():
                    entry.rename(target / entry.name)
            shutil.rmtree(run_dir)
            done.removed[old] = new
            continue
        run_dir.rename(target)
        done.renamed[old] = new
        _rewrite_run_file(target / "run.nc", new, cell_of_run.get(old))
        done.run_files += 1
    for path, ds in blocks.items():
        if schema_version(ds) >= SCHEMA_VERSION:
            continue
        ids = np.vectorize(_content_key, otypes=[object])(ds["run_id"].values, ds["config_json"].values)
        upgraded = upgrade_block(ds.assign(run_id=(ds["run_id"].dims, ids.astype(str))))
        save_block(upgraded, path)
        done.block_files += 1
    return done


def _n_variables(path: Path) -> int:
    """The number of data variables in a run file (more: a more complete record)."""
    with xr.open_dataset(path, engine=NETCDF_ENGINE) as ds:
        return len(ds.data_vars)


def _content_key(run_id: str, config_json: str) -> str:
    """The content key of a block file's run (its stored resolved config); "" for an empty cell."""
    return run_id_of(RunConfig.model_validate_json(str(config_json))) if run_id else ""


def _run_ids(ds: xr.Dataset) -> list[tuple[str, str]]:
    """(config label, run id) of every run in a block Dataset."""
    ds = with_ground_truth_axis(ds)
    table = ds["run_id"].to_dataframe().reset_index()
    return [(str(c), str(r)) for c, r in zip(table["config"], table["run_id"]) if r]


def _rewrite_run_file(path: Path, run_id: str, cell: Cell | None) -> None:
    """The run file at ``path`` with its new ``run_id``, the factor coordinates of ``cell`` (its
    own label as the arm when no block names it) and the schema version."""
    ds = xr.load_dataset(path, engine=NETCDF_ENGINE)
    version = schema_version(ds)
    ds = rename_arms(ds)
    label = str(ds["config"].values[0])
    ds = ds.assign(run_id=(ds["run_id"].dims, np.full(ds["run_id"].shape, run_id, dtype=object)))
    if version < 2:
        cells = {label: Cell(label, cell.arm, cell.base_config, cell.overrides, cell.factors)} if cell else {}
        ds = ds.assign_coords(factor_coords([label], cells))
    ds.attrs["schema_version"] = SCHEMA_VERSION
    write_netcdf_atomic(ds, path)
