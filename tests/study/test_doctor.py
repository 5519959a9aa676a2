"""``flyvis-study doctor``: a read-only account of a results folder."""

import shutil

from conftest import REPO
from typer.testing import CliRunner

from flyvis_study.cli import app
from flyvis_study.study.doctor import examine
from flyvis_study.study.record import NETCDF_ENGINE, SCHEMA_VERSION

EXAMPLES = REPO / "reports" / "examples" / "small"


def _copy(tmp_path, n_runs=3):
    """block0.nc of the committed examples and its first n runs (their files, no checkpoints)."""
    folder = tmp_path / "study"
    (folder / "runs").mkdir(parents=True)
    shutil.copy(EXAMPLES / "block0.nc", folder)
    import xarray as xr

    with xr.open_dataset(EXAMPLES / "block0.nc", engine=NETCDF_ENGINE) as ds:
        ids = [str(r) for r in ds["run_id"].values.ravel() if str(r)]
    for run_id in ids[:n_runs]:
        shutil.copytree(EXAMPLES / "runs" / run_id, folder / "runs" / run_id,
                        ignore=shutil.ignore_patterns("checkpoints"))
    return folder, ids


def test_doctor_reads_a_healthy_folder_and_names_what_a_rerun_would_do(tmp_path):
    folder, ids = _copy(tmp_path)
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    res = CliRunner().invoke(app, ["doctor", str(folder)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0] == f"folder {folder}: lock free"
    assert lines[1] == f"  block0.nc: ok: block 0, schema {SCHEMA_VERSION}, 4 runs"
    assert lines[2].startswith(f"  block0.nc: 1 of its runs are not in runs/ ({ids[3]}")
    assert lines[3] == "  runs/: 3 finished, 0 failed, 0 in flight, 0 damaged, 0 not started"
    assert lines[4].startswith("  a rerun would: recompute 0 run(s)")
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()} == before  # read only


def test_doctor_names_a_damaged_run_and_block_file_and_exits_1(tmp_path):
    folder, ids = _copy(tmp_path)
    metrics = folder / "runs" / ids[0] / "metrics.json"
    metrics.write_text(metrics.read_text().replace("0.", "1.", 1))  # a byte changed under the manifest
    (folder / "block1.nc").write_bytes(b"\0" * 4096)
    (folder / "runs" / "s9_t9__00000000" / "checkpoints").mkdir(parents=True)
    (folder / "runs" / "s9_t9__00000000" / "checkpoints" / "epoch_0.pt").write_bytes(b"x")
    report = examine(folder)
    assert report.damaged == {ids[0]: "metrics.json sha256 mismatch"}
    assert report.in_flight == ["s9_t9__00000000"] and not report.healthy
    assert report.blocks["block1.nc"].startswith("not a readable block file")
    res = CliRunner().invoke(app, ["doctor", str(folder)])
    assert res.exit_code == 1
    assert f"  damaged {ids[0]}: metrics.json sha256 mismatch" in res.output.splitlines()
    assert res.output.splitlines()[-1].endswith("(1 damaged, 1 resumed from their checkpoints, 0 failed by "
                                                "infrastructure or error, 0 not started), keep the rest; "
                                                "rebuild block1.nc from its runs")
    assert (folder / "runs" / ids[0] / "run.nc").is_file()  # nothing moved aside
