"""Schema 2 (content-keyed run ids, factor coordinates), schema 3 (arms named after their config
files) and the migration of schema-1 and schema-2 folders."""

import json
import shutil

import numpy as np
import pytest
import xarray as xr
from conftest import FAST

import flyvis_study as fs
from flyvis_study import run_block
from flyvis_study.study.record import NETCDF_ENGINE, SCHEMA_VERSION, write_netcdf_atomic
from flyvis_study.study.results import save_block
from flyvis_study.study.schema import load_block, migrate_folder, renamed_label

OLD_ARM = {0: "standard", 6: "standard_1_epoch"}  # the gold standard's name in blocks 0 and 6 before schema 3


def _old_labels(ds: xr.Dataset, block: int) -> xr.Dataset:
    """``ds`` with the gold standard's arm named as block ``block`` named it before schema 3, in its
    labels, ``arm`` coordinate and stored parameters."""
    old = OLD_ARM[block]
    ds = ds.assign_coords(config=[str(c).replace("gold_standard", old) for c in ds["config"].values])
    if "arm" in ds.coords:
        ds = ds.assign_coords(arm=("config", [str(a).replace("gold_standard", old) for a in ds["arm"].values]))
    if ds.attrs.get("parameters"):
        ds.attrs["parameters"] = ds.attrs["parameters"].replace('"gold_standard"', json.dumps(old))
    return ds


def _downgrade_run(run_dir, old_id: str, block: int, drop: tuple = ()) -> None:
    """The run folder as schema 1 left it: named ``old_id``, its run file without schema version
    and factor coordinates, labelled as ``block`` labelled it, ``run_id`` the old id (``drop``:
    variables it did not have yet)."""
    ds = _old_labels(xr.load_dataset(run_dir / "run.nc", engine=NETCDF_ENGINE), block)
    ds = ds.drop_vars([c for c in ds.coords if ds[c].dims == ("config",) and c != "config"] + list(drop))
    ds = ds.assign(run_id=(ds["run_id"].dims, np.full(ds["run_id"].shape, old_id, dtype=object)))
    del ds.attrs["schema_version"]
    write_netcdf_atomic(ds, run_dir / "run.nc")
    run_dir.rename(run_dir.with_name(old_id))


def _downgrade_block(path, old_ids: dict, block: int) -> None:
    ds = _old_labels(xr.load_dataset(path, engine=NETCDF_ENGINE), block)
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
    six = run_block(6, {**common, "arms": ["gold_standard"], "blank_fraction": [0]}, progress=False)
    key = zero.specs[0].run_id
    assert six.specs[0].run_id == key  # one run (content key), trained once
    runs = tmp_path / "runs"
    shutil.copytree(runs / key, runs / "copy")
    shutil.rmtree(runs / "copy" / "checkpoints")
    identity = [v for v in xr.open_dataset(runs / key / "run.nc", engine=NETCDF_ENGINE).data_vars if "identity" in v]
    old0, old6 = f"standard__{key}", f"standard_1_epoch_blank=0_noise=0.05__{key}"
    (rich, rich_block), (poor, poor_block) = ((old6, 6), (old0, 0)) if request.param == "block 6's" else \
        ((old0, 0), (old6, 6))
    _downgrade_run(runs / key, poor, poor_block, drop=tuple(identity))
    _downgrade_run(runs / "copy", rich, rich_block)
    _downgrade_block(zero.path, {key: old0}, 0)
    _downgrade_block(six.path, {key: old6}, 6)
    return tmp_path, key


@pytest.mark.slow
def test_a_schema_1_block_reads_with_its_factors_before_migration(schema_1_folder):
    folder, _ = schema_1_folder
    ds = load_block(folder / "block6.nc")
    assert ds.attrs["schema_version"] == SCHEMA_VERSION
    assert ds["arm"].values.tolist() == ["gold_standard"]  # was standard_1_epoch
    assert ds["config"].values.tolist() == ["gold_standard_blank=0_noise=0.05"]
    assert ds["blank_fraction"].values.tolist() == [0.0] and ds["noise_level"].values.tolist() == [0.05]
    assert json.loads(ds.attrs["parameters"])["arms"] == ["gold_standard"]
    assert fs.open_block(folder / "block0.nc").ds["arm"].values.tolist() == ["gold_standard"]  # was standard


@pytest.mark.slow
def test_migration_renames_runs_to_content_keys_and_merges_duplicates(schema_1_folder):
    folder, key = schema_1_folder
    done = migrate_folder(folder)
    assert [p.name for p in (folder / "runs").iterdir()] == [key]
    assert len(done.removed) == 1 and done.block_files == 2
    run = folder / "runs" / key
    assert (run / "checkpoints").is_dir()  # taken over from the duplicate it replaced
    with xr.open_dataset(run / "run.nc", engine=NETCDF_ENGINE) as ds:
        assert "V_rest_R2_identity" in ds.data_vars  # the more complete record was kept
        assert ds.attrs["schema_version"] == SCHEMA_VERSION and str(ds["run_id"].values.ravel()[0]) == key
        assert str(ds["arm"].values[0]) == "gold_standard"  # the arm of both blocks that use it, renamed
    for name in ("block0.nc", "block6.nc"):
        block = fs.open_block(folder / name)
        assert block.runs["run_id"].tolist() == [key] and block.ds.attrs["schema_version"] == SCHEMA_VERSION
        assert block.median_run().path == run
    assert fs.open_block(folder / "block6.nc").factorial.sel(arm="gold_standard")["label"].item() == \
        "gold_standard_blank=0_noise=0.05"
    again = migrate_folder(folder)
    assert (again.renamed, again.removed, again.run_files, again.block_files) == ({}, {}, 0, 0)


@pytest.mark.parametrize("old,new", [
    ("standard", "gold_standard"), ("standard_1_epoch_blank=0_noise=0.05", "gold_standard_blank=0_noise=0.05"),
    ("two_stage_default", "two_stage"), ("best(two_stage_default)", "best(two_stage)"),
    ("standard_2_epochs_blank=0.5_noise=0.05", "standard_2_epochs_blank=0.5_noise=0.05"),  # its own name already
    ("standard_2_epochs_constant_schedule", "standard_2_epochs_constant_schedule"), ("lr_ratio=0.05", "lr_ratio=0.05")])
def test_schema_3_names_each_arm_after_its_config_file(old, new):
    assert renamed_label(old) == new


@pytest.mark.slow
def test_a_schema_2_folder_is_renamed_in_place(tmp_path, dataset_root):
    """A schema-2 folder (content keys and factors, the old arm names): read as schema 3 before
    migration; migrated, every file says schema 3 and the new names, no run folder moves."""
    common = {"overrides": FAST, "cache_dir": str(dataset_root), "out_dir": str(tmp_path), "replicates": 1}
    zero = run_block(0, common, progress=False)
    six = run_block(6, {**common, "arms": ["gold_standard"], "blank_fraction": [0]}, progress=False)
    key = zero.specs[0].run_id
    for path, block in ((zero.path, 0), (six.path, 6)):
        ds = _old_labels(xr.load_dataset(path, engine=NETCDF_ENGINE), block)
        ds.attrs["schema_version"] = 2
        save_block(ds, path)
    run = _old_labels(xr.load_dataset(tmp_path / "runs" / key / "run.nc", engine=NETCDF_ENGINE), 0)
    run.attrs["schema_version"] = 2
    write_netcdf_atomic(run, tmp_path / "runs" / key / "run.nc")
    assert xr.load_dataset(zero.path, engine=NETCDF_ENGINE)["arm"].values.tolist() == ["standard"]
    assert fs.open_block(zero.path).ds["arm"].values.tolist() == ["gold_standard"]  # read as schema 3
    done = migrate_folder(tmp_path)
    assert (done.renamed, done.removed, done.run_files, done.block_files) == ({}, {}, 1, 2)
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [key]
    for path, label in ((zero.path, "gold_standard"), (six.path, "gold_standard_blank=0_noise=0.05")):
        ds = xr.load_dataset(path, engine=NETCDF_ENGINE)
        assert ds.attrs["schema_version"] == SCHEMA_VERSION == 3
        assert ds["config"].values.tolist() == [label] and ds["arm"].values.tolist() == ["gold_standard"]
    run = xr.load_dataset(tmp_path / "runs" / key / "run.nc", engine=NETCDF_ENGINE)
    assert run.attrs["schema_version"] == 3 and run["arm"].values.tolist() == ["gold_standard"]
    assert json.loads(xr.load_dataset(six.path, engine=NETCDF_ENGINE).attrs["parameters"])["arms"] == ["gold_standard"]
    again = migrate_folder(tmp_path)
    assert (again.run_files, again.block_files) == (0, 0)
