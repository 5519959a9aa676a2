"""Every bad input and damaged file we know of, run for real: exit code, seconds, stderr lines, writes.

Each case runs one command (the CLI, papermill, or a line of Python) in a fresh temporary
folder at the tiny preset, with whatever damaged file it needs made there first, and records:
the exit code, the wall time, the number of stderr lines, whether anything was written under
the case's ``--out`` folder (or a block's ``runs/``), and the last stderr line. A case passes
when it exits non-zero with one line naming the key or file before any compute, or, for the
repair cases, exits 0 after one ``repaired:`` line.

    python tools/bad_inputs.py                  # the markdown table on stdout
    python tools/bad_inputs.py --json FILE      # also every measured field, as JSON
    python tools/bad_inputs.py -k papermill     # only the cases whose name contains this

Each command runs in its case folder (so a damaged copy of the package on PYTHONPATH is the one
imported), on one thread (``OMP_NUM_THREADS=1``), so it can run beside other work. The table in
docs/reliability.md is its output, dated, with its commit.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "reports" / "examples" / "small"
CLI = [sys.executable, "-m", "flyvis_study.cli"]


@dataclass
class Case:
    name: str
    command: list[str]  # {tmp} and {out} are replaced by the case's folder and its output folder
    setup: str = ""  # a key of SETUPS: the damaged file(s) the case needs, made in {tmp}
    env: dict[str, str] = field(default_factory=dict)
    expect: str = "refused"  # or "repaired": exit 0 after one `repaired:` line


@dataclass
class Result:
    name: str
    command: str
    rc: int
    seconds: float
    stderr_lines: int
    wrote: bool
    last_line: str
    ok: bool


def _random(path: Path, size: int = 4096) -> None:
    path.write_bytes(os.urandom(size))


def _truncated(source: Path, path: Path) -> None:
    path.write_bytes(source.read_bytes()[: source.stat().st_size // 3])


def _zeroed(source: Path, path: Path) -> None:
    data = bytearray(source.read_bytes())
    middle = len(data) // 2
    data[middle: middle + 4096] = bytes(min(4096, len(data) - middle))
    path.write_bytes(bytes(data))


def _copy_checkout(tmp: Path) -> Path:
    copy = tmp / "checkout"
    for part in ("flyvis_study", "params", "notebooks"):
        shutil.copytree(REPO / part, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
    return copy


def _run_file_as_block(tmp: Path) -> None:
    run = next((EXAMPLE / "runs").glob("*/run.nc"))
    shutil.copy(run, tmp / "block1.nc")


def _damaged_package(relative: str, how: str):
    def make(tmp: Path) -> None:
        copy = _copy_checkout(tmp)
        path = copy / relative
        if how == "comment header only":
            path.write_text("".join(line for line in path.read_text().splitlines(True) if line.startswith("#")))
        else:
            _truncated(REPO / relative, path)
    return make


def _flyvis_root(tmp: Path) -> None:
    network = tmp / "flyvis" / "results" / "flow" / "0000" / "001"
    network.mkdir(parents=True)
    _random(network / "best_chkpt", 2048)


def _cached_connectome(tmp: Path) -> None:
    cached = tmp / "cache" / "connectome" / "fib25-fib19_v2.2.json"
    cached.parent.mkdir(parents=True)
    _random(cached, 618_148)


SETUPS = {
    "random block": lambda tmp: _random(tmp / "block1.nc"),
    "truncated block": lambda tmp: _truncated(EXAMPLE / "block1.nc", tmp / "block1.nc"),
    "zeroed block": lambda tmp: _zeroed(EXAMPLE / "block1.nc", tmp / "block1.nc"),
    "run file as block": _run_file_as_block,
    "a regular file": lambda tmp: (tmp / "afile").write_text("x"),
    "broken yaml": lambda tmp: (tmp / "broken.yaml").write_text("training:\n  lr: [1,\n"),
    "garbage connectome": lambda tmp: _random(tmp / "fib25.json"),
    "garbage flyvis checkpoint": _flyvis_root,
    "garbage cached connectome": _cached_connectome,
    "empty folder": lambda tmp: (tmp / "empty").mkdir(),
    "two_stage.yaml comment header only": _damaged_package("params/two_stage.yaml", "comment header only"),
    "tiny.yaml truncated": _damaged_package("params/presets/tiny.yaml", "truncated"),
    "flyvis model json truncated": _damaged_package("flyvis_study/world/flyvis_models/flow_0000_000.json",
                                                    "truncated"),
    "block0.ipynb truncated": _damaged_package("notebooks/block0.ipynb", "truncated"),
    "study_summary.ipynb truncated": lambda tmp: (_damaged_package("notebooks/study_summary.ipynb",
                                                                   "truncated")(tmp),
                                                  shutil.copy(EXAMPLE / "block0.nc", tmp / "block0.nc")),
}
IN_COPY = {"PYTHONPATH": "{tmp}/checkout", "PYTHONDONTWRITEBYTECODE": "1"}
PAPERMILL = [sys.executable, "-m", "papermill", "--no-progress-bar"]


def _block(number: int, *args: str) -> list[str]:
    return [*CLI, "block", str(number), "--preset", "tiny", "--out", "{out}", *args]


CASES = [
    # block parameters
    Case("block: unknown number", _block(9)),
    Case("block: misspelt parameter", _block(1, "-p", "bogus=1")),
    Case("block: -p without a value", _block(1, "-p", "replicates")),
    Case("block: replicates 0", _block(1, "-p", "replicates=0")),
    Case("block: replicates true", _block(1, "-p", "replicates=true")),
    Case("block: lr_ratio out of range", _block(3, "-p", "lr_ratio=[0.05, 3]")),
    Case("block: lr_ratio empty", _block(3, "-p", "lr_ratio=[]")),
    Case("block: unknown preset", [*CLI, "block", "1", "--preset", "huge", "--out", "{out}"]),
    Case("block: device tpu", _block(1, "-p", "device=tpu")),
    Case("block: device cuda, no GPU", _block(1, "-p", "device=cuda")),
    Case("block: unknown seed_mode", _block(1, "-p", "seed_mode=sometimes")),
    Case("block: seed lists of unequal length", _block(1, "-p", "sim_seeds=[0, 1]", "-p", "train_seeds=[0]")),
    Case("block: negative seed", _block(1, "-p", "sim_seeds=[-1]", "-p", "train_seeds=[0]")),
    Case("block: a seed pair twice", _block(0, "-p", "sim_seeds=[0, 0]", "-p", "train_seeds=[0, 0]")),
    Case("block: scheduler not an address", _block(1, "-p", "scheduler=notanaddress")),
    Case("block: scheduler unreachable", _block(1, "-p", "scheduler=tcp://127.0.0.1:1")),
    Case("block: unknown config key in overrides", _block(1, "-p", "overrides={training.bogus: 1}")),
    Case("block: --progress-every -5", _block(0, "--progress-every", "-5")),
    Case("block: --progress-every 0", _block(0, "--progress-every", "0")),
    Case("block: cache_dir is a file", _block(0, "-p", "cache_dir={tmp}/afile"), "a regular file"),
    Case("block: --out is a file", [*CLI, "block", "0", "--preset", "tiny", "--out", "{tmp}/afile"], "a regular file"),
    Case("block 7: unknown arm", _block(7, "-p", "arms=[foo]")),
    Case("block 7: derivative_target noisy", _block(7, "-p", "overrides={training.derivative_target: noisy}")),
    Case("block 7: negative silent anchor", _block(7, "-p", "overrides={training.coeff_g_phi_silent: -1}")),
    Case("block 7: silent range reversed", _block(7, "-p", "overrides={training.g_phi_silent_low: 1}")),
    Case("block 8: unknown arm", _block(8, "-p", "arms=[foo]")),
    # result files that are damaged or of the wrong kind
    Case("report: random block file", [*CLI, "report", "--out", "{tmp}"], "random block"),
    Case("report: truncated block file", [*CLI, "report", "--out", "{tmp}"], "truncated block"),
    Case("report: zeroed block file", [*CLI, "report", "--out", "{tmp}"], "zeroed block"),
    Case("report: a run file named block1.nc", [*CLI, "report", "--out", "{tmp}"], "run file as block"),
    Case("report: no block files", [*CLI, "report", "--out", "{tmp}/empty"], "empty folder"),
    Case("block 1: compare_with a random file", _block(1, "-p", "compare_with={tmp}/block1.nc"), "random block"),
    Case("block 1: compare_with a missing file", _block(1, "-p", "compare_with={tmp}/nofile.nc")),
    Case("block 5: best_from a truncated file", _block(5, "-p", "best_from=[{tmp}/block1.nc]"), "truncated block"),
    Case("block 5: best_from a run file", _block(5, "-p", "best_from=[{tmp}/block1.nc]"), "run file as block"),
    Case("open_block (Python): zeroed block file", [  # the exception's type and message, as a user sees them
        sys.executable, "-c", "import sys, flyvis_study as fs\ntry:\n    fs.open_block('{tmp}/block1.nc')\n"
        "except Exception as err:\n    sys.exit(f'{type(err).__name__}: {err}')"], "zeroed block"),
    # papermill run directly
    Case("papermill: misspelt parameter", [*PAPERMILL, str(REPO / "notebooks/block3.ipynb"), "{tmp}/o.ipynb",
                                           "-p", "lr_ratoi", "0.05", "-p", "out_dir", "{out}"]),
    Case("papermill: lr_ratio 0", [*PAPERMILL, str(REPO / "notebooks/block3.ipynb"), "{tmp}/o.ipynb",
                                   "-p", "lr_ratio", "0", "-p", "out_dir", "{out}"]),
    Case("papermill: replicates 0", [*PAPERMILL, str(REPO / "notebooks/block1.ipynb"), "{tmp}/o.ipynb",
                                     "-p", "replicates", "0", "-p", "out_dir", "{out}"]),
    Case("papermill: unknown arm", [*PAPERMILL, str(REPO / "notebooks/block6.ipynb"), "{tmp}/o.ipynb",
                                    "-y", "{arms: [foo]}", "-p", "out_dir", "{out}"]),
    # train, and the other commands
    Case("train: --out is a file", [*CLI, "train", "--config", "gold_standard.yaml", "--preset", "tiny",
                                    "--out", "{tmp}/afile"], "a regular file"),
    Case("train: --out below a file", [*CLI, "train", "--config", "gold_standard.yaml", "--preset", "tiny",
                                       "--out", "{tmp}/afile/run"], "a regular file"),
    Case("train: broken YAML config", [*CLI, "train", "--config", "{tmp}/broken.yaml", "--out", "{out}"],
         "broken yaml"),
    Case("train: no such config", [*CLI, "train", "--config", "nosuch.yaml", "--out", "{out}"]),
    Case("train: two bad config keys", [*CLI, "train", "--config", "two_stage.yaml", "--preset", "tiny",
                                        "-s", "training.lr=-1", "-s", "training.bogus=1", "--out", "{out}"]),
    Case("train: derivative_target noisy", [*CLI, "train", "--config", "two_stage.yaml", "--preset", "tiny",
                                            "-s", "training.derivative_target=noisy", "--out", "{out}"]),
    Case("window: --budget 0", [*CLI, "window", "0", "--preset", "tiny", "--out", "{out}", "--budget", "0"]),
    Case("window: --budget abc", [*CLI, "window", "0", "--preset", "tiny", "--out", "{out}", "--budget", "abc"]),
    Case("window: --unpack a missing file", [*CLI, "window", "0", "--preset", "tiny", "--out", "{out}",
                                             "--unpack", "{tmp}/nofile.tar.gz"]),
    Case("window: --pack is a file", [*CLI, "window", "0", "--preset", "tiny", "--out", "{out}", "--budget", "1m",
                                      "--pack", "{tmp}/afile"], "a regular file"),
    Case("explore: budget 0", [*CLI, "explore", "--preset", "tiny", "--out", "{out}", "-p", "budget=0"]),
    Case("explore: unknown proposer", [*CLI, "explore", "--preset", "tiny", "--out", "{out}", "-p", "proposer=foo"]),
    Case("explore: unknown space key", [*CLI, "explore", "--preset", "tiny", "--out", "{out}",
                                        "-p", "space={training.bogus: [1, 2]}"]),
    Case("explore: misspelt parameter", [*CLI, "explore", "--preset", "tiny", "--out", "{out}", "-p", "budjet=3"]),
    Case("explore: storage not a URL", [*CLI, "explore", "--preset", "tiny", "--out", "{out}",
                                        "-p", "storage=notaurl"]),
    Case("doctor: no such folder", [*CLI, "doctor", "{tmp}/nofolder"]),
    Case("migrate: no results", [*CLI, "migrate", "{tmp}/empty"], "empty folder"),
    Case("reevaluate: no runs", [*CLI, "reevaluate", "{tmp}/empty"], "empty folder"),
    # packaged and cached data
    Case("package: two_stage.yaml cut to its comment header", [*CLI, "block", "1", "--preset", "tiny", "--out",
                                                                "{out}"], "two_stage.yaml comment header only",
         IN_COPY),
    Case("package: tiny preset truncated", _block(0), "tiny.yaml truncated", IN_COPY),
    Case("package: built-in flyvis network truncated", _block(0, "-p", "ground_truth_models=[flow/0000/000]"),
         "flyvis model json truncated", IN_COPY),
    Case("package: block notebook truncated", _block(0), "block0.ipynb truncated", IN_COPY),
    Case("package: summary notebook truncated", [*CLI, "report", "--out", "{tmp}"], "study_summary.ipynb truncated",
         IN_COPY),
    Case("FLYVIS_CONNECTOME_FILE: garbage (block)", _block(0), "garbage connectome",
         {"FLYVIS_CONNECTOME_FILE": "{tmp}/fib25.json"}),
    Case("FLYVIS_CONNECTOME_FILE: garbage (connectome)", [*CLI, "connectome"], "garbage connectome",
         {"FLYVIS_CONNECTOME_FILE": "{tmp}/fib25.json"}),
    Case("FLYVIS_CONNECTOME_FILE: no such file", _block(0), "", {"FLYVIS_CONNECTOME_FILE": "{tmp}/nofile.json"}),
    Case("cached connectome changed, no package index", _block(0), "garbage cached connectome",
         {"FLYVIS_STUDY_CACHE": "{tmp}/cache", "PIP_INDEX_URL": "http://127.0.0.1:1/simple",
          "PIP_RETRIES": "0", "PIP_TIMEOUT": "2"}),
    Case("FLYVIS_ROOT_DIR: garbage best_chkpt", _block(0, "-p", "ground_truth_models=[flow/0000/001]"),
         "garbage flyvis checkpoint", {"FLYVIS_ROOT_DIR": "{tmp}/flyvis"}),
    Case("flyvis model not downloaded", _block(0, "-p", "ground_truth_models=[flow/0000/002]"), "",
         {"FLYVIS_ROOT_DIR": "{tmp}"}),
]


def _fill(text: str, tmp: Path) -> str:
    return text.replace("{tmp}", str(tmp)).replace("{out}", str(tmp / "out"))


def _snapshot(tmp: Path) -> set[str]:
    return {str(p.relative_to(tmp)) for p in tmp.rglob("*") if "checkout" not in p.relative_to(tmp).parts[:1]}


def run_case(case: Case) -> Result:
    with tempfile.TemporaryDirectory(prefix="bad-input-") as name:
        tmp = Path(name)
        if case.setup:
            SETUPS[case.setup](tmp)
        before = _snapshot(tmp)
        command = [_fill(a, tmp) for a in case.command]
        env = {**os.environ, "OMP_NUM_THREADS": "1", **{k: _fill(v, tmp) for k, v in case.env.items()}}
        t0 = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True, cwd=tmp, env=env, timeout=900)
        seconds = time.perf_counter() - t0
        written = _snapshot(tmp) - before - {"o.ipynb"}  # papermill's own output notebook
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
    if case.expect == "repaired":
        ok = proc.returncode == 0 and sum(line.startswith("repaired:") for line in lines) == 1
    else:
        ok = proc.returncode != 0 and not written and (len(lines) == 1 or command[:3] == PAPERMILL[:3])
    shown = " ".join(a if " " not in a else repr(a) for a in case.command[len(CLI) if case.command[:3] == CLI else 0:])
    return Result(case.name, shown, proc.returncode, round(seconds, 1), len(lines), bool(written),
                  lines[-1][:400] if lines else "", ok)


def table(results: list[Result]) -> str:
    rows = ["| case | exit | s | stderr lines | wrote | last stderr line |", "|---|---|---|---|---|---|"]
    for r in results:
        last = r.last_line.replace("|", "\\|")
        rows.append(f"| {r.name} | {r.rc} | {r.seconds:.1f} | {r.stderr_lines} | {'yes' if r.wrote else 'no'} "
                    f"| `{last[:160]}{'...' if len(last) > 160 else ''}` |")
    ok = sum(r.ok for r in results)
    rows.append(f"\n{ok} of {len(results)} cases: non-zero exit, one line (papermill: its own traceback, then ours "
                "as the last line), nothing written.")
    return "\n".join(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default="", help="only the cases whose name contains this")
    parser.add_argument("--json", type=Path, help="write every measured field here")
    args = parser.parse_args()
    results = []
    for case in CASES:
        if args.k in case.name:
            results.append(run_case(case))
            print(f"{'ok  ' if results[-1].ok else 'FAIL'} {case.name}: rc {results[-1].rc}, "
                  f"{results[-1].seconds:.1f} s, {results[-1].stderr_lines} lines", file=sys.stderr, flush=True)
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))
