"""The exploration loop on real tiny runs: Optuna storage, the two logs, a kill and a resume,
Dask, the notebook and the CLI's one-line errors."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import nbformat
import optuna
import pytest
from conftest import FAST, REPO

from flyvis_study.exploration.logs import analysis_path, memory_path
from flyvis_study.exploration.parameters import ExploreParameterError
from flyvis_study.exploration.progress import ExplorationMonitor
from flyvis_study.exploration.search import open_exploration, read_metrics, run_exploration
from flyvis_study.report.exploration import check_exploration
from flyvis_study.study.progress import describe

# a module-scoped fixture is built once per process: under `pytest -n N --dist loadgroup` the
# module stays on one worker, so it is built once
pytestmark = pytest.mark.xdist_group(__name__)

SPACE = {"alternate_lr_ratio": [0.05, 0.1, 0.2], "alternate_joint_ratio": [0.3, 0.4, 0.5]}


def params(out, cache, **more):
    return {"name": "ex", "preset": "tiny", "budget": 4, "proposer": "ucb", "space": SPACE, "max_replicates": 2,
            "overrides": FAST, "out_dir": str(out), "cache_dir": str(cache), "threads_per_run": 1, **more}


def summary(ex):
    return [(t.number, t.node, t.parent, t.levels, t.sim_seed, t.train_seed, t.run_id, t.state, t.objective)
            for t in ex.history.trials]


@pytest.fixture(scope="module")
def whole(tmp_path_factory, dataset_root):
    """An exploration never interrupted: UCB, 4 runs, serial, one thread per run."""
    return run_exploration(params(tmp_path_factory.mktemp("whole"), dataset_root), progress=False)


@pytest.mark.slow
def test_an_exploration_killed_midway_resumes_to_the_uninterrupted_one(whole, tmp_path, dataset_root):
    """Killed (SIGKILL) while its third run trains, then resumed: the same trials, nodes, seeds,
    run ids and objectives as an exploration never interrupted (threads fixed: bitwise), each
    log entry once, the interrupted trial told under its own number."""
    assert [t.state for t in whole.history.trials] == ["complete"] * 4
    assert whole.history.trials[0].levels == whole.space.root and whole.history.trials[0].parent is None

    cut = tmp_path / "cut"
    code = ("from flyvis_study.exploration.search import run_exploration; "
            f"run_exploration({params(cut, dataset_root)!r})")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"})
    storage = f"sqlite:///{cut / 'ex.optuna.db'}"
    deadline = time.time() + 300
    running = None
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
        try:
            trials = optuna.load_study(study_name="ex", storage=storage).get_trials(deepcopy=False)
        except (KeyError, Exception):  # noqa: BLE001 - the study or its tables not created yet
            continue
        live = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING and "run_id" in t.user_attrs]
        if live and live[0].number == 2 and (cut / "runs" / live[0].user_attrs["run_id"] / "progress.json").exists():
            running = live[0]
            break
    assert running is not None, "the third trial never started training"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    resumed = run_exploration(params(cut, dataset_root), progress=False)
    assert summary(resumed) == summary(whole)
    assert resumed.history.trials[2].run_id == running.user_attrs["run_id"]
    log = analysis_path(cut, "ex").read_text()
    assert [log.count(f"## Iter {k}:") for k in range(1, 6)] == [1, 1, 1, 1, 0]
    for field in ("Node: id=", "Mutation:", "Parent rule:", "Observation:", "Variance update:", "Next:"):
        assert log.count(field) == 4
    assert "Next: none (the budget of runs is spent)" in log
    memory = memory_path(cut, "ex").read_text()
    assert "Rewritten after run 4 of 4" in memory and "## Current best" in memory and "## Open" in memory
    assert not (cut / ".flyvis-study.lock").exists()
    # a finished exploration asked again trains nothing and keeps its trials
    again = run_exploration(params(cut, dataset_root), progress=False)
    assert summary(again) == summary(whole)


def test_every_trial_is_an_ordinary_run_paired_with_the_reference(whole):
    """Trials and reference runs are content-keyed run folders; every node's first run is on
    the first seed pair; the constraint uses the reference run on the trial's own seed pair."""
    runs, out = whole.history.runs, whole.out_dir
    # the root, its replicate (the best node with one run), then children on the first seed pair
    assert [(t.sim_seed, t.train_seed) for t in runs] == [(0, 0), (1, 1), (0, 0), (0, 0)]
    assert runs[1].node == 0 and runs[2].parent is not None and ": " in runs[2].mutation
    folders = {p.name for p in (out / "runs").iterdir()}
    assert len(folders) == 6  # 4 trials + the reference (gold standard) on 2 seed pairs
    references = [read_metrics(out / "runs" / f / "run.nc") for f in folders - {t.run_id for t in runs}]
    for t in runs:
        assert read_metrics(out / "runs" / t.run_id / "run.nc")["V_rest_R2"] == t.objective
        assert t.reference_conn in [r["connectivity_R2"] for r in references]
    stored = whole.study.trials[2]
    assert stored.constraints == {"connectivity": pytest.approx(runs[2].reference_conn - 0.02 - runs[2].conn)}
    assert open_exploration(whole.parameters).history.runs == runs


@pytest.mark.slow
def test_a_sampler_on_a_small_space_stops_at_its_duplicates(tmp_path, dataset_root):
    """TPE on a 2-node space with one replicate each: re-proposals are told the node's mean
    (no run), the budget counts runs only, and the search stops when nothing is left."""
    ex = run_exploration(params(tmp_path, dataset_root, budget=3, proposer="tpe", max_replicates=1,
                                space={"alternate_lr_ratio": [0.1, 0.2]}), progress=False)
    assert len(ex.history.runs) == 2
    assert {t.levels for t in ex.history.runs} == {(0.1,), (0.2,)}
    assert all(t.state == "duplicate" for t in ex.history.trials if t not in ex.history.runs)


@pytest.mark.slow
def test_on_dask_workers_the_runs_equal_the_serial_ones(whole, tmp_path, dataset_root):
    """Two trials in flight on a LocalCluster of 2 workers (1 thread each): every run file
    that the serial and the Dask exploration share has the same metrics."""
    dask = run_exploration(params(tmp_path, dataset_root, budget=3, workers=2), progress=False)
    assert len(dask.history.runs) == 3 and all(t.state == "complete" for t in dask.history.runs)
    shared = {t.run_id for t in whole.history.runs} & {t.run_id for t in dask.history.runs}
    assert shared
    for run_id in shared:
        a = read_metrics(whole.out_dir / "runs" / run_id / "run.nc")
        b = read_metrics(tmp_path / "runs" / run_id / "run.nc")
        assert {k: v for k, v in a.items() if k != "training_time_min"} == \
            {k: v for k, v in b.items() if k != "training_time_min"}
    assert analysis_path(tmp_path, "ex").read_text().count("## Iter ") == 3


def cli(*args):
    return subprocess.run([sys.executable, "-m", "flyvis_study.cli", "explore", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=120)


@pytest.mark.parametrize("values,needle", [
    ({"bugdet": 3}, "bugdet: unknown parameter"),
    ({"budget": 0}, "budget: Input should be greater than or equal to 1"),
    ({"proposer": "grid"}, "proposer: Input should be 'ucb', 'seed_rule', 'tpe', 'gp' or 'random'"),
    ({"space": {"lr_ratoi": [0.1]}}, "space: unknown parameter 'lr_ratoi'"),
    ({"space": {"alternate_lr_ratio": []}}, "space.alternate_lr_ratio: a non-empty list"),
    ({"space": {"alternate_lr_ratio": [0.1, 7]}}, "space.alternate_lr_ratio=7"),
    ({"storage": "sqlite:////no/such/folder/x.db"}, "storage sqlite:////no/such/folder/x.db: cannot be opened"),
    ({"reference": "no_such_config"}, "reference no_such_config.yaml"),
    ({"name": "a/b"}, "name: letters, digits and _ . = - only"),
])
def test_bad_exploration_input_is_one_line(tmp_path, values, needle):
    with pytest.raises(ExploreParameterError) as err:
        check_exploration(out_dir=str(tmp_path / "out"), **values)
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out" / "runs").exists()


def test_a_new_out_folder_holds_the_default_study_and_a_given_url_is_used_as_is(tmp_path):
    """The default SQLite study lives in --out, created when new; a given URL's folder is never created."""
    check_exploration(out_dir=str(tmp_path / "new" / "out"), name="ex")
    assert (tmp_path / "new" / "out" / "ex.optuna.db").is_file()
    with pytest.raises(ExploreParameterError, match="cannot be opened"):
        check_exploration(out_dir=str(tmp_path / "out"), storage=f"sqlite:///{tmp_path / 'absent' / 'x.db'}")
    assert not (tmp_path / "absent").exists()


@pytest.mark.parametrize("args,needle", [
    (["-p", "bugdet=3"], "bugdet: unknown parameter"),
    (["-p", "storage=sqlite:////no/such/folder/x.db"], "storage sqlite:////no/such/folder/x.db: cannot be opened"),
])
def test_the_explore_command_refuses_bad_input_in_one_line_before_any_run(tmp_path, args, needle):
    result = cli("--out", str(tmp_path / "out"), *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert not (tmp_path / "out" / "runs").exists()


@pytest.mark.slow
def test_the_explore_command_runs_the_notebook_and_renders_its_report(whole, tmp_path):
    """`flyvis-study explore`: papermill runs notebooks/explore_search.ipynb; the HTML holds the
    working memory, the figure and the tables. Its runs are the finished runs of an earlier
    exploration in the same folder (content-keyed), so nothing trains."""
    shutil.copytree(whole.out_dir / "runs", tmp_path / "runs")
    before = {p.name: (p / "run.nc").stat().st_mtime_ns for p in (tmp_path / "runs").iterdir()}
    args = ["--preset", "tiny", "--out", str(tmp_path), "-p", "budget=2", "-p", f"overrides={json.dumps(FAST)}",
            "-p", f"cache_dir={whole.parameters.cache_dir}", "-p", f"space={json.dumps(SPACE)}",
            "-p", "max_replicates=2", "-p", "threads_per_run=1"]
    result = cli(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    html = (tmp_path / "exploration.html").read_text()
    assert "exploration: working memory" in html and "Current best" in html and "<img" in html
    nb = nbformat.read(str(tmp_path / "exploration.ipynb"), as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error" or o.get("name") == "stderr"]  # no error, no warning
    assert "Warning" not in result.stderr and "WARNING" not in result.stderr, result.stderr  # a quiet terminal
    lines = result.stderr.splitlines()  # progress only: the monitor's lines, the last one final
    assert lines and lines[-1] == "runs 2/2 done" and all(line.startswith("runs ") for line in lines), lines
    assert analysis_path(tmp_path, "exploration").read_text().count("## Iter ") == 2
    assert {p.name: (p / "run.nc").stat().st_mtime_ns for p in (tmp_path / "runs").iterdir()} == before


def test_the_progress_monitor_reads_the_runs_from_the_study(whole, tmp_path):
    """The CLI's progress line: the exploration's runs are its trials' run ids (read from the
    Optuna study), counted against the budget; a study that does not exist yet shows 0 runs and
    is not created by the monitor."""
    monitor = ExplorationMonitor(whole.parameters, print)
    snap = monitor.snapshot()
    assert snap.total == whole.parameters.budget == 4
    assert snap.done == {t.run_id for t in whole.history.trials} and len(snap.done) == 4
    assert describe(snap, None) == "runs 4/4 done"
    fresh = ExplorationMonitor(whole.parameters.model_copy(update={"out_dir": str(tmp_path)}), print)
    assert describe(fresh.snapshot(), None) == "runs 0/4 done"
    assert not (tmp_path / f"{whole.parameters.name}.optuna.db").exists()
