"""A read-only check of a results folder: what is there, what is damaged, what a rerun would do.

``examine(folder)`` looks at the folder's lock, every block file (readable, kind, schema
version, its runs present or not) and every run folder (run file checksum and manifest,
outcome, checkpoints) and returns a ``FolderReport``; ``FolderReport.lines()`` says it in a
few lines (``flyvis-study doctor``). Nothing is written, moved or repaired: the damaged files
are those a rerun moves aside and recomputes (``study.run.is_finished``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from flyvis_study.failures import RETRIED_FAILURES, Status
from flyvis_study.integrity import verify, verify_manifest
from flyvis_study.locks import LOCK_NAME, describe_owner, holder, read_owner
from flyvis_study.study.record import NETCDF_ENGINE
from flyvis_study.study.result_files import ResultFileError, read_result_file
from flyvis_study.train.checkpoints import checkpoints, partial_path


@dataclass
class FolderReport:
    """What ``examine`` found; each list holds run ids or file names."""

    folder: Path
    lock: str = "free"
    blocks: dict[str, str] = field(default_factory=dict)  # file name -> "ok: ..." or what is wrong
    missing_runs: dict[str, list[str]] = field(default_factory=dict)  # block file -> its runs not in runs/
    finished: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # run id -> failure kind
    damaged: dict[str, str] = field(default_factory=dict)  # run id -> why
    in_flight: list[str] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.damaged and all(v.startswith("ok") for v in self.blocks.values())

    def lines(self) -> list[str]:
        retried = sorted(r for r, kind in self.failed.items() if kind in RETRIED_FAILURES)
        kinds: dict[str, int] = {}
        for kind in self.failed.values():
            kinds[kind or "failed"] = kinds.get(kind or "failed", 0) + 1
        out = [f"folder {self.folder}: lock {self.lock}"]
        out += [f"  {name}: {state}" for name, state in self.blocks.items()] or ["  no block files"]
        out += [f"  {name}: {len(ids)} of its runs are not in runs/ ({', '.join(ids[:3])}"
                f"{', ...' if len(ids) > 3 else ''}); a rerun of that block trains them"
                for name, ids in self.missing_runs.items() if ids]
        out.append(f"  runs/: {len(self.finished)} finished, {len(self.failed)} failed"
                   + (f" ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))})" if kinds else "")
                   + f", {len(self.in_flight)} in flight, {len(self.damaged)} damaged, {len(self.empty)} not started")
        out += [f"  damaged {run_id}: {why}" for run_id, why in self.damaged.items()]
        todo = len(self.damaged) + len(self.in_flight) + len(retried) + len(self.empty)
        bad_blocks = [n for n, v in self.blocks.items() if not v.startswith("ok")]
        out.append(f"  a rerun would: recompute {todo} run(s) ({len(self.damaged)} damaged, {len(self.in_flight)} "
                   f"resumed from their checkpoints, {len(retried)} failed by infrastructure or error, "
                   f"{len(self.empty)} not started), keep the rest"
                   + (f"; rebuild {', '.join(bad_blocks)} from its runs" if bad_blocks else ""))
        return out


def examine(folder: str | Path) -> FolderReport:
    """The folder's state (module docstring); reads only."""
    folder = Path(folder)
    report = FolderReport(folder)
    lock = folder / LOCK_NAME
    if lock.exists():
        owner = holder(lock)
        report.lock = (f"held by {describe_owner(owner)}" if owner else
                       f"stale ({describe_owner(read_owner(lock) or {})}; the next block breaks it)")
    runs = folder / "runs"
    for run_dir in sorted(p for p in runs.glob("*") if p.is_dir()) if runs.is_dir() else []:
        _examine_run(run_dir, report)
    for path in sorted(folder.glob("block[0-9]*.nc")):
        try:
            ds = read_result_file(path, "block")
        except ResultFileError as err:
            report.blocks[path.name] = str(err).removeprefix(f"{path}: ")
            continue
        ids = [str(r) for r in np.asarray(ds["run_id"].values).ravel() if str(r)]
        report.blocks[path.name] = (f"ok: block {ds.attrs.get('block', '?')}, schema "
                                    f"{ds.attrs.get('schema_version', 1)}, {len(ids)} runs")
        report.missing_runs[path.name] = [r for r in ids if not (runs / r / "run.nc").is_file()]
    return report


def _examine_run(run_dir: Path, report: FolderReport) -> None:
    path = run_dir / "run.nc"
    run_id = run_dir.name
    if not path.is_file():
        if checkpoints(run_dir) or partial_path(run_dir).is_file():
            report.in_flight.append(run_id)
        else:
            report.empty.append(run_id)
        return
    reason = verify(path)
    if reason not in (None, "no checksum"):
        report.damaged[run_id] = f"run.nc {reason}"
        return
    try:
        with xr.open_dataset(path, engine=NETCDF_ENGINE) as ds:
            kind = str(ds.attrs.get("failure_kind", ""))
            status = str(np.asarray(ds["status"].values).ravel()[0])
            files = json.loads(ds.attrs.get("files", "{}"))
    except (OSError, ValueError, KeyError) as err:
        report.damaged[run_id] = f"run.nc unreadable ({type(err).__name__})"
        return
    bad = verify_manifest(run_dir, files)
    if bad is not None:
        report.damaged[run_id] = f"{bad[0]} {bad[1]}"
    elif status == Status.FAILED:
        report.failed[run_id] = kind
    else:
        report.finished.append(run_id)
