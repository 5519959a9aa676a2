"""A block's runs trained a few at a time in short windows (a lent GPU), packed for the trip back.

``train_window(specs, out_root, budget_s)`` trains the plan's unfinished runs in plan order
until ``budget_s`` seconds of wall time have passed: each run resumes from its last checkpoint
(end of epoch or within an epoch), writes a within-epoch checkpoint every
``checkpoint_every_s`` seconds, and the run in progress at the budget is cut after its step
in progress (``train.loop.TrainingCut``), to go on in the next window bitwise as if never cut.
A run whose training ends before the budget is evaluated and written whatever the time (its
final checkpoint makes a run killed during evaluation only re-evaluate), so a window's budget
should leave the call time for one evaluation and the packing.

``pack_runs(out_root, run_ids, dest)`` writes one ``<run_id>.tar.gz`` per run (the run folder
with its last checkpoints only: the last epoch's and, for a cut run, the within-epoch one);
``unpack_runs(archives, out_root)`` puts them back into ``out_root/runs/`` on the other side,
replacing what was there. ``window_status`` is the plan's status line: runs done, in flight
(checkpoints but no run file) and missing. The datasets are not packed: they are regenerated
wherever they are needed (deterministic, keyed by their config).
"""

from __future__ import annotations

import re
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from flyvis_study.study.run import is_finished, run_one
from flyvis_study.study.spec import RunSpec
from flyvis_study.train.checkpoints import checkpoints, partial_path
from flyvis_study.train.loop import TrainingCut

ARCHIVE_LIMIT_BYTES = 16 * 2**20  # what one file brought back from a GPU window may weigh
ARCHIVE_SUFFIX = ".tar.gz"
_RUN_ID = re.compile(r"^[A-Za-z0-9_.+-]+$")


@dataclass(frozen=True)
class WindowStatus:
    """The plan's runs by state, each a list of run ids in plan order."""

    done: list[str]
    in_flight: list[str]
    missing: list[str]

    def line(self) -> str:
        n = len(self.done) + len(self.in_flight) + len(self.missing)
        flight = f" ({', '.join(self.in_flight)})" if self.in_flight else ""
        return (f"plan: {len(self.done)} of {n} runs done, {len(self.in_flight)} in flight{flight}, "
                f"{len(self.missing)} missing")


def window_status(specs: list[RunSpec], out_root: str | Path) -> WindowStatus:
    """Done (a finished run file), in flight (a checkpoint, no run file) or missing, per run."""
    out_root = Path(out_root)
    done, in_flight, missing = [], [], []
    for spec in specs:
        run_dir = out_root / "runs" / spec.run_id
        if is_finished(spec, out_root):
            done.append(spec.run_id)
        elif checkpoints(run_dir) or partial_path(run_dir).is_file():
            in_flight.append(spec.run_id)
        else:
            missing.append(spec.run_id)
    return WindowStatus(done, in_flight, missing)


def train_window(specs: list[RunSpec], out_root: str | Path, budget_s: float, checkpoint_every_s: float | None = None,
                 progress: bool = False, log=print) -> list[str]:
    """Train the unfinished runs of ``specs`` in order until ``budget_s`` seconds have passed
    (module docstring); returns the ids of the runs it trained (finished or cut), in order."""
    stop_at = time.monotonic() + budget_s
    touched = []
    for spec in specs:
        if is_finished(spec, out_root):
            continue
        if time.monotonic() >= stop_at:
            break
        touched.append(spec.run_id)
        t0 = time.monotonic()
        try:
            run_one(spec, out_root, progress, stop_at=stop_at, checkpoint_every_s=checkpoint_every_s)
        except TrainingCut as cut:
            log(f"{spec.run_id}: cut after {time.monotonic() - t0:.0f} s; {cut.steps_left} steps left")
            break
        log(f"{spec.run_id}: finished in {time.monotonic() - t0:.0f} s")
    return touched


def pack_runs(out_root: str | Path, run_ids: list[str], dest: str | Path) -> list[Path]:
    """One ``dest/<run_id>.tar.gz`` per run (its folder, last checkpoints only); each checked
    against ``ARCHIVE_LIMIT_BYTES``. Returns the archives' paths."""
    out_root, dest = Path(out_root), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    archives = []
    for run_id in run_ids:
        run_dir = out_root / "runs" / run_id
        older = {p.name for p in checkpoints(run_dir)[:-1]}
        older |= {f"{name}.sha256" for name in older}
        path = dest / f"{run_id}{ARCHIVE_SUFFIX}"
        with tarfile.open(path, "w:gz") as tar:
            for file in sorted(run_dir.rglob("*")):
                if file.is_file() and not (file.parent.name == "checkpoints" and file.name in older):
                    tar.add(file, arcname=f"runs/{run_id}/{file.relative_to(run_dir)}")
        size = path.stat().st_size
        if size > ARCHIVE_LIMIT_BYTES:
            raise ValueError(f"{path}: {size / 2**20:.1f} MiB, over the {ARCHIVE_LIMIT_BYTES / 2**20:.0f} MiB "
                             "a window can bring back")
        archives.append(path)
    return archives


def unpack_runs(archives: list[str | Path], out_root: str | Path) -> list[str]:
    """Put packed runs back into ``out_root/runs/<run_id>/`` (each replacing the folder there);
    returns their run ids. An archive that is not one run folder is refused, nothing written."""
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    unpacked = []
    for archive in map(Path, archives):
        run_id = archive.name.removesuffix(ARCHIVE_SUFFIX)
        if not archive.name.endswith(ARCHIVE_SUFFIX) or not _RUN_ID.match(run_id):
            raise ValueError(f"{archive}: not a packed run (<run_id>{ARCHIVE_SUFFIX})")
        try:
            with tarfile.open(archive, "r:gz") as tar:
                members = tar.getmembers()
                bad = [m.name for m in members if not m.isfile() or not m.name.startswith(f"runs/{run_id}/")
                       or ".." in Path(m.name).parts]
                if bad or not members:
                    raise ValueError(f"{archive}: holds {bad[0] if bad else 'nothing'}, "
                                     f"not only files of runs/{run_id}/")
                with tempfile.TemporaryDirectory(dir=out_root) as tmp:
                    tar.extractall(tmp, filter="data")
                    target = out_root / "runs" / run_id
                    if target.exists():
                        shutil.rmtree(target)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.move(Path(tmp) / "runs" / run_id, target)
        except (tarfile.TarError, EOFError, OSError) as err:
            raise ValueError(f"{archive}: unreadable ({type(err).__name__}: {err})") from None
        unpacked.append(run_id)
    return unpacked
