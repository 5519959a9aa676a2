"""Schema 2 (content-keyed run ids, factor coordinates) and the migration of schema-1 folders."""

import shutil

import numpy as np
import pytest
import xarray as xr
from conftest import FAST

import flyvis_study as fs
from flyvis_study import run_block
from flyvis_study.study.record import SCHEMA_VERSION, write_netcdf_atomic
from flyvis_study.study.results import save_block
from flyvis_study.study.schema import load_block, migrate_folder


def _downgrade_run(run_dir, old_id: str, drop: tuple = ()) -> None:
    """The run folder as schema 1 left it: named ``old_id``, its run file without schema version
    and factor coordinates, ``run_id`` the old id (``drop``: variables it did not have yet)."""
    ds = xr.load_dataset(run_dir / "run.nc", engine="h5netcdf")
    ds = ds.drop_vars([c for c in ds.coords if ds[c].dims == ("config",) and c != "config"] + list(drop))
    ds = ds.assign(run_id=(ds["run_id"].dims, np.full(ds["run_id"].shape, old_id, dtype=object)))
    del ds.attrs["schema_version"]
    write_netcdf_atomic(ds, run_dir / "run.nc")
    run_dir.rename(run_dir.with_name(old_id))


def _downgrade_block(path, old_ids: dict) -> None:
    ds = xr.load_dataset(path, engine="h5netcdf")
    ds = ds.drop_vars([c for c in ds.coords if ds[c].dims == ("config",) and c != "config"])
    ids = np.vectorize(lambda i: old_ids.get(i, i), otypes=[object])(ds["run_id"].values).astype(str)
    ds = ds.assign(run_id=(ds["run_id"].dims, ids))
    del ds.attrs["schema_version"]
    save_block(ds, path)


@pytest.fixture(params=["block 6's", "block 0's"])
def schema_1_folder(request, tmp_path, dataset_root):
    """Blocks 0 and 6 sharing one run, written as schema 1 wrote them: two folders for the one run,
    one with the identity R2 and no checkpoint, the other with a checkpoint and without the
    identity R2 (the committed example: block 6's the richer; the other way round too, so the
    richer folder comes first or second in name order), label-prefixed run ids, no factor
    coordinates."""
    common = {"overrides": FAST, "cache_dir": str(dataset_root), "out_dir": str(tmp_path), "replicates": 1}
    zero = run_block(0, common, progress=False)
    six = run_block(6, {**common, "arms": ["standard_1_epoch"], "blank_fraction": [0]}, progress=False)
    key = zero.specs[0].run_id
    assert six.specs[0].run_id == key  # one run (content key), trained once
    runs = tmp_path / "runs"
    shutil.copytree(runs / key, runs / "copy")
    shutil.rmtree(runs / "copy" / "checkpoints")
    identity = [v for v in xr.open_dataset(runs / key / "run.nc", engine="h5netcdf").data_vars if "identity" in v]
    old0, old6 = f"standard__{key}", f"standard_1_epoch_blank=0_noise=0.05__{key}"
    rich, poor = (old6, old0) if request.param == "block 6's" else (old0, old6)
    _downgrade_run(runs / key, poor, drop=tuple(identity))
    _downgrade_run(runs / "copy", rich)
    _downgrade_block(zero.path, {key: old0})
    _downgrade_block(six.path, {key: old6})
    return tmp_path, key


def test_a_schema_1_block_reads_with_its_factors_before_migration(schema_1_folder):
    folder, _ = schema_1_folder
    ds = load_block(folder / "block6.nc")
    assert ds.attrs["schema_version"] == SCHEMA_VERSION
    assert ds["arm"].values.tolist() == ["standard_1_epoch"]
    assert ds["blank_fraction"].values.tolist() == [0.0] and ds["noise_level"].values.tolist() == [0.05]
    assert fs.open_block(folder / "block0.nc").ds["arm"].values.tolist() == ["standard"]


def test_migration_renames_runs_to_content_keys_and_merges_duplicates(schema_1_folder):
    folder, key = schema_1_folder
    done = migrate_folder(folder)
    assert [p.name for p in (folder / "runs").iterdir()] == [key]
    assert len(done.removed) == 1 and done.block_files == 2
    run = folder / "runs" / key
    assert (run / "checkpoints").is_dir()  # taken over from the duplicate it replaced
    with xr.open_dataset(run / "run.nc", engine="h5netcdf") as ds:
        assert "V_rest_R2_identity" in ds.data_vars  # the more complete record was kept
        assert ds.attrs["schema_version"] == SCHEMA_VERSION and str(ds["run_id"].values.ravel()[0]) == key
        assert str(ds["arm"].values[0]) in ("standard", "standard_1_epoch")  # the arm of a block that uses it
    for name in ("block0.nc", "block6.nc"):
        block = fs.open_block(folder / name)
        assert block.runs["run_id"].tolist() == [key] and block.ds.attrs["schema_version"] == SCHEMA_VERSION
        assert block.median_run().path == run
    assert fs.open_block(folder / "block6.nc").factorial.sel(arm="standard_1_epoch")["label"].item() == \
        "standard_1_epoch_blank=0_noise=0.05"
    again = migrate_folder(folder)
    assert (again.renamed, again.removed, again.run_files, again.block_files) == ({}, {}, 0, 0)
