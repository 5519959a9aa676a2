"""Command-line interface (``flyvis-study``): thin wrappers over the library."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import typer

from flyvis_study.config import DEFAULT_PRESET
from flyvis_study.failures import Status

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Two-stage GNN training study on the simulated fly optic lobe.")


def _fail(message: str) -> None:
    """One line on stderr, exit 2: a message of several lines (a config's errors, one per key)
    is joined, its first line then each further one after '; '."""
    first, *rest = message.strip().splitlines() or [""]
    line = f"{first} {'; '.join(r.strip() for r in rest)}" if rest else first
    typer.echo(f"error: {line}", err=True)
    raise typer.Exit(code=2)


def _parse_params(params: list[str] | None) -> dict:
    from flyvis_study.config import ConfigError, parse_value

    out = {}
    for item in params or []:
        if "=" not in item or not item.split("=", 1)[0]:
            _fail(f"malformed -p value {item!r}: expected name=value")
        key, text = item.split("=", 1)
        try:
            out[key] = parse_value(text)
        except ConfigError as err:
            _fail(f"-p {key}: {err}")
    return out


def _check_device(device: str) -> None:
    if device not in ("cpu", "cuda"):
        _fail(f"--device {device!r}: allowed: cpu, cuda")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            _fail("--device cuda: no CUDA device is available on this machine (allowed here: cpu)")


def _check_connectome_file() -> None:
    """The connectome file every world is built from: found and verified, or one line."""
    from flyvis_study.world.connectome_file import connectome_problem

    problem = connectome_problem()
    if problem:
        _fail(problem)


def _monitored(monitor, work: Callable[[], dict], refused: tuple[type[Exception], ...]) -> dict:
    """``work()`` with ``monitor`` (a started-here progress thread) printing while it runs; its
    final line after. A refusal (``refused``) stays one line, with no progress line after it."""
    monitor.start()
    try:
        outputs = work()
    except refused as err:
        monitor.stop(final_line=False)
        _fail(str(err))
    except BaseException:
        monitor.stop(final_line=False)
        raise
    monitor.stop()
    return outputs


def _check_listening(address: str, timeout: float = 5.0) -> None:
    """Something accepts TCP connections at a scheduler address ``tcp://host:port``, or one line."""
    import socket

    if not address.startswith(("tcp://", "tls://")):  # ucx, inproc, ...: Dask's own check only
        return
    host, _, port = address.split("://", 1)[1].rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except (OSError, ValueError) as err:
        _fail(f"scheduler {address}: not reachable ({type(err).__name__}: {err})")


def _check_out_folder(out: Path) -> None:
    """--out must be (or become) a writable folder: one line before any compute, not a traceback after."""
    from flyvis_study.study.parameters import check_writable_folder

    try:
        check_writable_folder(out.resolve())
    except ValueError as err:
        _fail(f"--out {out}: {err}")


@app.command()
def connectome(extent: int = typer.Option(8, help="lattice extent n >= 1"),
               as_json: bool = typer.Option(False, "--json", help="print one JSON object")) -> None:
    """Build the flyvis connectome on a hexagonal lattice and print its counts."""
    from flyvis_study.world.connectome import build_connectome

    if extent < 1:
        _fail(f"--extent must be >= 1 (got {extent})")
    _check_connectome_file()
    counts = build_connectome(extent).counts()
    if as_json:
        typer.echo(json.dumps(counts))
        return
    for key, value in counts.items():
        typer.echo(f"{key:24s} {value:>12,}")


@app.command()
def simulate(preset: str = typer.Option(DEFAULT_PRESET, help="tiny | small | full"),
             config: Path | None = typer.Option(None, help="YAML run config"),
             sim_seed: int | None = typer.Option(None, help="simulation.seed"),
             set_: list[str] | None = typer.Option(None, "--set", "-s",
                                                      help="override, e.g. simulation.noise_model_level=0.1"),
             device: str = typer.Option("cpu", help="cpu | cuda"),
             cache: Path | None = typer.Option(None, help="dataset cache folder"),
             regenerate: bool = typer.Option(False, help="ignore a cached copy"),
             progress: bool = typer.Option(True, help="show a progress bar")) -> None:
    """Generate (or reuse) the simulated dataset and print a summary."""
    import time

    from flyvis_study.config import ConfigError, load_run_config
    from flyvis_study.world.dataset import get_dataset

    _check_device(device)
    overrides = _parse_params(set_)
    if sim_seed is not None:
        overrides["simulation.seed"] = sim_seed
    try:
        cfg = load_run_config(config, preset=preset, overrides=overrides)
    except ConfigError as err:
        _fail(str(err))
    _check_connectome_file()
    t0 = time.perf_counter()
    ds = get_dataset(cfg.simulation, root=cache, device=device, progress=progress, regenerate=regenerate)
    elapsed = time.perf_counter() - t0
    m = ds.meta
    typer.echo(f"dataset         {ds.path}")
    typer.echo(f"ground truth    {m['ground_truth_source']}")
    c = m["counts"]
    typer.echo(f"connectome      extent {c['extent']}: {c['n_neurons']:,} neurons, {c['n_edges']:,} edges, "
               f"{c['n_input_neurons']:,} inputs, {c['n_cell_types']} cell types")
    for split in ("train", "test"):
        d = m["diagnostics"][split]
        typer.echo(f"{split:5s} frames    {d['n_frames']:,} (non-finite {d['n_nonfinite_frames']}); "
                   f"v in [{d['v_range'][0]:.3f}, {d['v_range'][1]:.3f}], "
                   f"y in [{d['y_range'][0]:.3f}, {d['y_range'][1]:.3f}]")
        typer.echo(f"      eff. rank input {d['effective_rank_input']}, activity {d['effective_rank_activity']}")
    t = m["timing_s"]
    typer.echo(f"generation      {t['total']:.1f} s (stimulus {t['stimulus']:.1f} s, "
               f"simulation {t['simulation']:.1f} s) on {m['device']}; this call {elapsed:.1f} s")


@app.command()
def train(config: Path = typer.Option(..., help="YAML run config: a file, or a shipped base config "
                                                      "(two_stage.yaml, gold_standard.yaml)"),
          preset: str = typer.Option(DEFAULT_PRESET, help="tiny | small | full"),
          sim_seed: int = typer.Option(0, help="simulation.seed (data)"),
          train_seed: int = typer.Option(0, help="training.seed (initialisation, batches)"),
          out: Path = typer.Option(..., help="run directory"),
          device: str = typer.Option("cpu", help="cpu | cuda"),
          set_: list[str] | None = typer.Option(None, "--set", "-s", help="override, e.g. training.n_epochs=3"),
          cache: Path | None = typer.Option(None, help="dataset cache folder"),
          progress: bool = typer.Option(True, help="show progress bars"),
          plots: bool = typer.Option(True, help="write plots/run.png")) -> None:
    """Train one run (standard or two-stage per the config) and evaluate it."""
    from flyvis_study.config import ConfigError, load_run_config

    overrides = _parse_params(set_)
    overrides.update({"simulation.seed": sim_seed, "training.seed": train_seed})
    try:
        cfg = load_run_config(config, preset=preset, overrides=overrides)
    except ConfigError as err:
        _fail(str(err))
    _check_device(device)
    _check_out_folder(out)
    _check_connectome_file()
    from flyvis_study.evaluation.names import HEADLINE_METRICS  # torch: only once the input is good
    from flyvis_study.fast.allocator import keep_freed_memory, release_freed_memory
    from flyvis_study.study.run import run_training

    keep_freed_memory()  # this process trains: keep freed memory (fast/allocator.py)
    record = run_training(cfg, out, device=device, progress=progress, cache=cache, plots=plots)
    release_freed_memory()
    typer.echo(f"run {out}: status {record['status']}" + (f" ({record['reason']})" if record["reason"] else ""))
    for key in (*HEADLINE_METRICS, "training_time_min"):
        value = record.get(key)
        typer.echo(f"  {key:20s} {value:.4f}" if isinstance(value, float) else f"  {key:20s} {value}")
    if record["status"] == Status.FAILED:  # diverged, unrecovered or not evaluated: the shell sees it
        typer.echo(f"error: run {out} failed ({record.get('failure_kind') or 'failed'}): {record['reason']}", err=True)
        raise typer.Exit(code=1)


@app.command()
def block(number: int = typer.Argument(..., help="block number, 0 to 8 (an unknown one is refused with the list)"),
          preset: str | None = typer.Option(None, help=f"tiny | small | full (default {DEFAULT_PRESET})"),
          out: Path = typer.Option(Path("reports"), help="output folder"),
          param: list[str] | None = typer.Option(None, "-p", "--param",
                                                 help="block parameter name=value (YAML value)"),
          progress_every: float = typer.Option(30.0, help="seconds between live progress lines (on stderr), > 0")
          ) -> None:
    """Run block N's notebook with papermill; write blockN.ipynb, blockN.html and blockN.nc.

    Every parameter is validated, every run's config resolved and the scheduler (if any)
    reached before papermill starts; a bad value stops with one line and exit code 2. While the
    notebook runs, a progress line (runs done, each running run's phase and last R2, ETA) goes
    to stderr when something changed, at most every --progress-every seconds.
    """
    from flyvis_study.resources import PackageDataError, notebook_file
    from flyvis_study.study.blocks import block_definition, block_parameters, check_input_files, plan_block
    from flyvis_study.study.parameters import BlockParameterError

    if not progress_every > 0:
        _fail(f"--progress-every {progress_every:g}: seconds between progress lines, a number > 0")
    params = _parse_params(param)
    if preset is not None:
        params["preset"] = preset
    params["out_dir"] = str(Path.cwd() / out)
    try:
        validated = block_parameters(number, **params)
        specs = plan_block(number, validated)
        check_input_files(specs)
        notebook_file(block_definition(number).notebook)  # its bytes checked against the package manifest
    except (BlockParameterError, PackageDataError) as err:
        _fail(str(err))
    if validated.scheduler:
        _check_listening(validated.scheduler)  # a refused connection: one line at once, without dask or torch
        from flyvis_study.study.runner import SchedulerError, check_scheduler  # torch: only with a scheduler

        try:
            check_scheduler(validated.scheduler)
        except SchedulerError as err:
            _fail(str(err))
    from flyvis_study.report.notebooks import execute_block  # torch, papermill: only once the input is good
    from flyvis_study.study.progress import BlockMonitor

    monitor = BlockMonitor(validated.out_dir, [s.run_id for s in specs], lambda line: typer.echo(line, err=True),
                           interval=progress_every)
    outputs = _monitored(monitor, lambda: execute_block(number, params), (BlockParameterError,))  # BlockInUse
    for kind, path in outputs.items():
        typer.echo(f"{kind:6s} {path}")


@app.command()
def explore(preset: str | None = typer.Option(None, help=f"tiny | small | full (default {DEFAULT_PRESET})"),
            out: Path = typer.Option(Path("reports/exploration"), help="output folder (runs/, logs, study, report)"),
            param: list[str] | None = typer.Option(None, "-p", "--param",
                                                   help="exploration parameter name=value (YAML value), e.g. "
                                                        "budget=12, proposer=tpe, space={n_epochs: [2, 3]}")) -> None:
    """Run (or resume) an adaptive exploration with papermill; write <name>.ipynb and <name>.html,
    the analysis log <name>_analysis.md, the working memory <name>_memory.md and the Optuna study
    <name>.optuna.db in --out.

    Every parameter, the search space and the storage are checked before papermill starts; a bad
    value stops with one line and exit code 2. Parameters: see `notebooks/explore_search.ipynb`
    or docs/exploration.md.
    """
    from flyvis_study.exploration.parameters import ExploreParameterError, explore_parameters
    from flyvis_study.resources import EXPLORATION_NOTEBOOK, PackageDataError, notebook_file
    from flyvis_study.study.parameters import BlockParameterError

    params = _parse_params(param)
    if preset is not None:
        params["preset"] = preset
    params["out_dir"] = str(Path.cwd() / out)
    try:
        explore_parameters(**params)  # the parameters first, without torch or optuna
    except ExploreParameterError as err:
        _fail(str(err))
    from flyvis_study.report.exploration import check_exploration  # then the space, storage and files
    from flyvis_study.report.notebooks import execute_exploration

    try:
        validated = check_exploration(**params)
        notebook_file(EXPLORATION_NOTEBOOK)  # its bytes checked against the package manifest
    except (ExploreParameterError, BlockParameterError, PackageDataError) as err:
        _fail(str(err))
    from flyvis_study.exploration.progress import ExplorationMonitor

    monitor = ExplorationMonitor(validated, lambda line: typer.echo(line, err=True))
    outputs = _monitored(monitor, lambda: execute_exploration(params),
                         (ExploreParameterError, BlockParameterError))  # BlockInUse: another writer in the folder
    for kind, path in outputs.items():
        typer.echo(f"{kind:6s} {path}")


def _duration(option: str, text: str) -> float:
    """Seconds from '90', '90s', '8m' or '1.5h'; one clear line otherwise."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        seconds = float(number) * units[unit]
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        _fail(f"{option} {text!r}: expected a positive duration such as 90s, 8m or 1.5h")
    return seconds


@app.command()
def window(number: int = typer.Argument(..., help="block number, 0 to 8"),
           preset: str | None = typer.Option(None, help=f"tiny | small | full (default {DEFAULT_PRESET})"),
           out: Path = typer.Option(Path("reports"), help="output folder (its runs/ holds the plan's runs)"),
           param: list[str] | None = typer.Option(None, "-p", "--param",
                                                  help="block parameter name=value (YAML value)"),
           budget: str | None = typer.Option(None, help="train until this much wall time has passed (90s, 8m, 1h)"),
           checkpoint_every: str = typer.Option("2m", help="within-epoch checkpoint interval while training"),
           pack: Path | None = typer.Option(None, help="write one <run_id>.tar.gz per run trained, into this folder"),
           unpack: list[Path] | None = typer.Option(None, help="put packed runs (<run_id>.tar.gz) into --out first"),
           progress: bool = typer.Option(False, help="show each run's progress bar")) -> None:
    """Train block N's runs a window at a time: in plan order until --budget, the run in progress
    cut and checkpointed to resume bitwise in the next window; then pack them for the trip back.

    Without --budget it only unpacks (--unpack) and prints the plan's status line (runs done,
    in flight, missing). Build the block's report from what exists with `flyvis-study block N`
    and `-p only_finished=true`.
    """
    from flyvis_study.study.blocks import block_parameters, check_input_files, plan_block
    from flyvis_study.study.parameters import BlockParameterError

    params = _parse_params(param)
    if preset is not None:
        params["preset"] = preset
    out = Path.cwd() / out
    params["out_dir"] = str(out)
    budget_s = _duration("--budget", budget) if budget is not None else None
    every_s = _duration("--checkpoint-every", checkpoint_every)
    missing = [str(a) for a in unpack or [] if not Path(a).is_file()]
    if missing:
        _fail(f"--unpack: no such file: {missing[0]}")
    if pack is not None and pack.exists() and not pack.is_dir():
        _fail(f"--pack {pack}: a file is there; expected a folder")
    try:
        validated = block_parameters(number, **params)
        specs = plan_block(number, validated)
        if budget_s is not None:  # it will train
            check_input_files(specs)
    except BlockParameterError as err:
        _fail(str(err))
    if validated.device == "cuda":
        _check_device("cuda")
    from flyvis_study.study.window import pack_runs, train_window, unpack_runs, window_status  # torch: from here
    if unpack:
        try:
            for run_id in unpack_runs(unpack, out):
                typer.echo(f"unpacked {run_id}")
        except ValueError as err:
            _fail(str(err))
    if budget_s is not None:
        touched = train_window(specs, out, budget_s, every_s, progress=progress, log=typer.echo)
        if pack is not None and touched:
            for path in pack_runs(out, touched, pack):
                typer.echo(f"packed {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    typer.echo(window_status(specs, out).line())


@app.command()
def doctor(out: Path = typer.Argument(Path("reports"), help="results folder (blockN.nc files and runs/)")) -> None:
    """Check a results folder without changing it: lock, block files, every run (checksums,
    manifests, outcome), and what a rerun would do. Exit 1 when something is damaged."""
    from flyvis_study.study.doctor import examine

    folder = Path.cwd() / out
    if not folder.is_dir():
        _fail(f"{folder}: no such folder")
    report = examine(folder)
    for line in report.lines():
        typer.echo(line)
    if not report.healthy:
        raise typer.Exit(code=1)


@app.command()
def report(out: Path = typer.Option(Path("reports"), help="folder with blockN.nc files")) -> None:
    """Build the study summary across blocks (study_summary.ipynb / .html) and the study index (index.html)."""
    from flyvis_study.resources import SUMMARY_NOTEBOOK, PackageDataError, notebook_file
    from flyvis_study.study.result_files import ResultFileError, read_result_file

    out = Path.cwd() / out  # the shell's relative path, not the project folder's
    if not out.is_dir() or not any(out.glob("block[0-9].nc")):
        _fail(f"no blockN.nc files in {out}; run `flyvis-study block N --out {out}` first")
    for path in sorted(out.glob("block[0-9].nc")):  # damaged, or a run file under a block's name
        try:
            read_result_file(path, "block")
        except ResultFileError as err:
            _fail(str(err))
    try:
        notebook_file(SUMMARY_NOTEBOOK)  # its bytes checked against the package manifest
    except PackageDataError as err:
        _fail(str(err))
    from flyvis_study.report.notebooks import execute_summary  # torch, papermill: only once the input is good

    for kind, path in execute_summary(out).items():
        typer.echo(f"{kind:6s} {path}")


@app.command()
def migrate(folder: Path = typer.Argument(..., help="a results folder with blockN.nc files and runs/")) -> None:
    """Bring a results folder written before schema 2 up to it: run folders renamed to their content
    keys (shared by every block that needs them), factor coordinates and schema versions in every file."""
    from flyvis_study.study.schema import migrate_folder

    folder = Path.cwd() / folder
    if not folder.is_dir() or not ((folder / "runs").is_dir() or any(folder.glob("block[0-9].nc"))):
        _fail(f"{folder}: not a results folder (no blockN.nc and no runs/)")
    done = migrate_folder(folder)
    typer.echo(done.summary())


@app.command()
def reevaluate(folder: Path = typer.Argument(..., help="a results folder with runs/"),
               cache: Path | None = typer.Option(None, help="dataset cache folder"),
               all_runs: bool = typer.Option(False, "--all", help="also runs that already hold every metric")) -> None:
    """Measure every metric of the finished runs again from their final checkpoints, without
    retraining (e.g. a readout added after they were trained); block files are then rebuilt by
    running the block again (it trains nothing)."""
    folder = Path.cwd() / folder
    if not (folder / "runs").is_dir():
        _fail(f"{folder}: not a results folder (no runs/)")
    from flyvis_study.study.reevaluate import reevaluate_folder  # torch: only once the input is good

    done = reevaluate_folder(folder, cache, only_missing=None if all_runs else "V_rest_R2_corrected")
    typer.echo(done.summary())


@app.command()
def bench(preset: str = typer.Option("full", help="tiny | small | full"),
          device: str = typer.Option("cpu", help="cpu | cuda"),
          as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
          fast_iters: int = typer.Option(30, help="timed fast steps"),
          naive_iters: int = typer.Option(3, help="timed naive steps"),
          no_eval: bool = typer.Option(False, "--no-eval", help="skip timing the final evaluation"),
          replicates: int | None = typer.Option(None, help="also time R stacked replicas against one run"),
          cache: Path | None = typer.Option(None, help="dataset cache folder")) -> None:
    """Benchmark simulation, training step (fast vs naive, same process), stacking, evaluation, memory."""
    from flyvis_study.bench import format_benchmark, run_benchmark
    from flyvis_study.config import PRESETS

    if preset not in PRESETS:
        _fail(f"--preset {preset!r}: allowed: {', '.join(PRESETS)}")
    if replicates is not None and replicates < 1:
        _fail(f"--replicates {replicates}: allowed: an integer >= 1")
    _check_device(device)
    result = run_benchmark(preset, device, fast_iters=fast_iters, naive_iters=naive_iters,
                           evaluate_metrics=not no_eval, cache=str(cache) if cache else None,
                           progress=not as_json, replicates=replicates)
    typer.echo(json.dumps(result) if as_json else format_benchmark(result))


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
