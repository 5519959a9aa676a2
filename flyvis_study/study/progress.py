"""Live progress of a block, read from its output folder while another process runs it.

Each training run keeps ``runs/<run_id>/progress.json`` (``train.progress``, rewritten
atomically at every metrics.log row: epoch, iteration, phase, the last in-loop R2 values and
the fraction of its iterations done). A run is finished when its ``run.nc`` exists. A block
writes ``.flyvis-study.block.json`` (``write_block_status``: the Dask dashboard address, if
any) in its output folder.

``BlockMonitor(out_dir, run_ids, echo)`` is a thread that polls those files and, once the
block has started (its status file is newer than the monitor), calls ``echo`` with one line
whenever something changed (at most every ``interval`` seconds): runs
done / total, each running run's epoch, phase, last conn_R2 and V_rest_R2, and an ETA. The
ETA extrapolates the work done since the monitor started (finished runs count 1, running
runs their fraction) to the runs that were not finished then; it covers the runs, not the
report rendering after them. ``flyvis-study block`` runs one while papermill executes the
notebook.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flyvis_study.atomic import write_json_atomic
from flyvis_study.integrity import REPAIRS_LOG, repairs_since
from flyvis_study.train.progress import RUN_PROGRESS

BLOCK_STATUS = ".flyvis-study.block.json"


def write_block_status(out_dir: Path, block: int, dashboard: str | None) -> None:
    write_json_atomic(out_dir / BLOCK_STATUS, {"block": block, "dashboard": dashboard or "", "updated": time.time()})


def dashboard_link(client) -> str | None:
    """The Dask dashboard address of ``client``'s scheduler, None when it serves none."""
    try:
        return client.dashboard_link
    except (KeyError, AttributeError):
        return None


@dataclass(frozen=True)
class RunningRun:
    run_id: str
    fraction: float
    epoch: int
    n_epochs: int
    phase: str
    conn: float | None
    vrest: float | None


@dataclass(frozen=True)
class Snapshot:
    done: frozenset[str]
    running: tuple[RunningRun, ...]
    total: int


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def snapshot(out_dir: str | Path, run_ids: list[str]) -> Snapshot:
    """Which of ``run_ids`` are finished, and where the started ones are."""
    runs = Path(out_dir) / "runs"
    done, running = set(), []
    for run_id in run_ids:
        if (runs / run_id / "run.nc").is_file():
            done.add(run_id)
            continue
        p = _read_json(runs / run_id / RUN_PROGRESS)
        if p is not None:
            running.append(RunningRun(run_id, float(p["fraction_done"]), int(p["epoch"]), int(p["n_epochs"]),
                                      str(p["phase"]), p.get("connectivity_r2"), p.get("vrest_r2")))
    return Snapshot(frozenset(done), tuple(running), len(run_ids))


def describe(snap: Snapshot, eta_s: float | None) -> str:
    """One line: runs done / total, each running run, the ETA."""
    parts = [f"runs {len(snap.done)}/{snap.total} done"]
    for r in snap.running:
        r2 = ", ".join(f"{name} {value:.3f}" for name, value in (("conn", r.conn), ("V_rest", r.vrest))
                       if value is not None)
        state = "evaluating" if r.fraction >= 1 else f"epoch {r.epoch + 1}/{r.n_epochs}, {r.phase} phase"
        parts.append(f"{r.run_id}: {100 * r.fraction:.0f} % ({state}{'; ' + r2 if r2 else ''})")
    if eta_s is not None:
        parts.append(f"ETA {eta_s / 60:.0f} min" if eta_s >= 60 else f"ETA {eta_s:.0f} s")
    return " | ".join(parts)


def run_fractions(snap: Snapshot) -> dict[str, float]:
    """Each started run's fraction done (a finished run 1)."""
    return {**{r.run_id: min(r.fraction, 1.0) for r in snap.running}, **dict.fromkeys(snap.done, 1.0)}


class BlockMonitor(threading.Thread):
    """Polls a block's output folder and ``echo``-es a progress line when it changes (a daemon thread)."""

    def __init__(self, out_dir: str | Path, run_ids: list[str], echo: Callable[[str], None],
                 interval: float = 10.0, poll: float = 1.0):
        super().__init__(daemon=True, name="flyvis-study-progress")
        self.out_dir, self.run_ids, self.echo = Path(out_dir), list(run_ids), echo
        self.interval, self.poll = interval, poll
        self._stop_event = threading.Event()
        self.started_at, self.started_wall = time.monotonic(), time.time()
        self.initial = self.snapshot()
        self.dashboard_shown = False
        self.repairs_log = self.out_dir / REPAIRS_LOG  # integrity.repaired: one line per repaired file
        self.repairs_offset = self.repairs_log.stat().st_size if self.repairs_log.is_file() else 0

    def snapshot(self) -> Snapshot:
        """The runs' state now (``snapshot`` of ``run_ids``)."""
        return snapshot(self.out_dir, self.run_ids)

    def echo_repairs(self) -> None:
        """Print each repair logged since the last call, as one 'repaired: ...' line."""
        lines, self.repairs_offset = repairs_since(self.repairs_log, self.repairs_offset)
        for line in lines:
            self.echo(f"repaired: {line}")

    def eta(self, snap: Snapshot) -> float | None:
        """Seconds left for the runs: elapsed x (work left / work done since the start), None until measurable."""
        before, now = run_fractions(self.initial), run_fractions(snap)
        work = sum(now.get(i, 0.0) - before.get(i, 0.0) for i in self.run_ids if i not in self.initial.done)
        left = sum(1.0 - now.get(i, 0.0) for i in self.run_ids)
        if work <= 0.01:
            return None
        return (time.monotonic() - self.started_at) * left / work

    def check(self, last: str | None, last_time: float) -> tuple[str | None, float]:
        """One poll: nothing until the block has started (written its status under the folder's lock), then
        the dashboard address once and the progress line when it changed and is due."""
        if not self.dashboard_shown:  # the block has not started yet: nothing to show
            status = _read_json(self.out_dir / BLOCK_STATUS)
            if status is None or status.get("updated", 0) < self.started_wall - 1:
                return last, last_time
            if status.get("dashboard"):
                self.echo(f"Dask dashboard: {status['dashboard']}")
            self.dashboard_shown = True
        self.echo_repairs()
        snap = self.snapshot()
        key = describe(snap, None)
        if key != last and time.monotonic() - last_time >= self.interval:
            self.echo(describe(snap, self.eta(snap)))
            return key, time.monotonic()
        return last, last_time

    def run(self) -> None:
        last, last_time = None, -self.interval
        while not self._stop_event.wait(self.poll):
            last, last_time = self.check(last, last_time)

    def stop(self, final_line: bool = True) -> None:
        """Stop polling and, if asked, print the final line."""
        self._stop_event.set()
        self.join(timeout=5)
        self.echo_repairs()
        if final_line:
            self.echo(describe(self.snapshot(), None))
