"""Blocks trained a window at a time (``study.window``, ``flyvis-study window``): cut, packed,
brought back, resumed, and the block built from what is finished."""

import json
import tarfile

import numpy as np
import pytest
import xarray as xr
from conftest import FAST
from typer.testing import CliRunner

from flyvis_study import run_block
from flyvis_study.cli import app
from flyvis_study.study.blocks import block_parameters, plan_block
from flyvis_study.study.parameters import BlockParameterError
from flyvis_study.study.record import NETCDF_ENGINE
from flyvis_study.study.run import run_one
from flyvis_study.study.window import pack_runs, train_window, unpack_runs, window_status

# a two-stage run (2 epochs), so the cut run has an epoch boundary to cross after the cut
OVERRIDES = {**FAST, "training.iterations_fraction": 0.01}


def _params(out, cache, replicates=2) -> dict:
    return {"replicates": replicates, "overrides": OVERRIDES, "cache_dir": str(cache), "out_dir": str(out)}


@pytest.mark.slow
def test_a_run_cut_in_one_window_and_finished_in_the_next_is_the_run_never_cut(tmp_path, dataset_root):
    gpu, home, whole = tmp_path / "gpu", tmp_path / "home", tmp_path / "whole"
    specs = plan_block(1, block_parameters(1, **_params(gpu, dataset_root)))
    first, second = (s.run_id for s in specs)

    touched = train_window(specs, gpu, budget_s=0.05, log=lambda line: None)  # cut within its first epoch
    assert touched == [first]
    status = window_status(specs, gpu)
    assert (status.done, status.in_flight, status.missing) == ([], [first], [second])
    assert status.line() == f"plan: 0 of 2 runs done, 1 in flight ({first}), 1 missing"
    (archive,) = pack_runs(gpu, touched, tmp_path / "back")
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert f"runs/{first}/checkpoints/partial.pt" in names and all(n.startswith(f"runs/{first}/") for n in names)

    # the other side: unpack, then the next window (through the CLI) finishes both runs
    cli = CliRunner()
    args = ["window", "1", "--preset", "tiny", "--out", str(home), "-p", "replicates=2",
            "-p", f"overrides={json.dumps(OVERRIDES)}", "-p", f"cache_dir={dataset_root}"]
    res = cli.invoke(app, [*args, "--unpack", str(archive)])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines() == [f"unpacked {first}", f"plan: 0 of 2 runs done, 1 in flight ({first}), "
                                       "1 missing"]
    res = cli.invoke(app, [*args, "--budget", "1h", "--pack", str(tmp_path / "back2")])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[-1] == "plan: 2 of 2 runs done, 0 in flight, 0 missing"
    assert sorted(p.name for p in (tmp_path / "back2").iterdir()) == sorted(f"{r}.tar.gz" for r in (first, second))

    run_one(specs[0], whole)  # never cut: same process and thread count, so bitwise the same
    with xr.open_dataset(home / "runs" / first / "run.nc", engine=NETCDF_ENGINE) as a, \
            xr.open_dataset(whole / "runs" / first / "run.nc", engine=NETCDF_ENGINE) as b:
        for name in ("connectivity_R2", "tau_R2", "V_rest_R2", "V_rest_R2_corrected", "test_R2"):
            assert a[name].values.item() == b[name].values.item(), name
    np.testing.assert_array_equal(np.load(home / "runs" / first / "loss.npy"),
                                  np.load(whole / "runs" / first / "loss.npy"))

    # the block from what is finished: 2 of a plan of 3, nothing trained
    before = sorted(p.name for p in (home / "runs").iterdir())
    block = run_block(1, {**_params(home, dataset_root, replicates=3), "only_finished": True}, progress=False)
    assert sorted(p.name for p in (home / "runs").iterdir()) == before
    assert len(block.specs) == 2 and int(block.statistics["n_runs"].sum()) == 2
    with pytest.raises(BlockParameterError, match="only_finished: none of block 0's"):
        run_block(0, {**_params(tmp_path / "empty", dataset_root), "only_finished": True}, progress=False)


def test_window_refuses_bad_input_in_one_line(tmp_path):
    cli = CliRunner()
    bad = tmp_path / "x.tar.gz"
    bad.write_bytes(b"not a tar")
    for args, message in (
            (["--budget", "soon"], "--budget 'soon': expected a positive duration such as 90s, 8m or 1.5h"),
            (["--budget", "-5m"], "--budget '-5m': expected a positive duration"),
            (["--unpack", str(tmp_path / "none.tar.gz")], "--unpack: no such file"),
            (["--unpack", str(bad)], "x.tar.gz: unreadable"),
            (["-p", "replicates=0"], "replicates")):
        res = cli.invoke(app, ["window", "0", "--out", str(tmp_path / "out"), *args])
        assert res.exit_code == 2, (args, res.output)
        lines = [line for line in res.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (args, res.output)
    archive = tmp_path / "s0_t0__00000000.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(bad, arcname="runs/other/x")
    with pytest.raises(ValueError, match="not only files of runs/s0_t0__00000000/"):
        unpack_runs([archive], tmp_path / "out")
