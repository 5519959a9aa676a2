"""Running a block: its output folder's writer lock, its runs, its block file and analysis logs.

``compute_block(N, parameters)`` validates and plans block N (``study.blocks``), takes the
output folder's lock (``block_lock``: one writer per folder; a second block stops at once with
``BlockInUse``, one line naming the holder), trains the runs not yet finished there (serial or
on Dask, ``study.runner``), and writes ``blockN.nc`` and the analysis logs. ``flyvis_study.run_block``
wraps it and returns the ``Block``. The block definitions and parameters stay importable
without this module's heavier imports (``study.blocks``: the CLI validates with them alone).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from flyvis_study.integrity import REPAIRS_ENV, REPAIRS_LOG, repairs_since
from flyvis_study.locks import LOCK_NAME, FileLock, LockHeld, held_by_ancestor
from flyvis_study.provenance import provenance
from flyvis_study.resources import project_path
from flyvis_study.study.analysis_log import append_analysis_logs
from flyvis_study.study.blocks import block_definition, block_parameters, plan_block
from flyvis_study.study.parameters import BlockParameterError, BlockParameters
from flyvis_study.study.progress import dashboard_link, write_block_status
from flyvis_study.study.results import save_block
from flyvis_study.study.run import is_finished
from flyvis_study.study.runner import close_client, make_client, run_many
from flyvis_study.study.spec import RunSpec
from flyvis_study.study.statistics import block_dataset


class BlockInUse(BlockParameterError):
    """Another block is writing into the same output folder (one line naming it)."""


def block_lock(out_dir: str | Path, number: int):
    """A context holding ``out_dir``'s writer lock for block ``number`` (``folder_lock``)."""
    return folder_lock(out_dir, f"flyvis-study block {number}")


def folder_lock(out_dir: str | Path, purpose: str):
    """A context holding ``out_dir``'s writer lock (nothing to take when an ancestor holds it);
    held by another process: ``BlockInUse``, one line naming the holder."""
    path = Path(out_dir) / LOCK_NAME
    if held_by_ancestor(path):
        return contextlib.nullcontext()
    lock = FileLock(path, purpose=f"{purpose} (writing {out_dir})", timeout=0)

    @contextlib.contextmanager
    def held():
        try:
            lock.acquire(0)
        except LockHeld as err:
            raise BlockInUse(f"output folder {out_dir} is in use by {err.owner.get('purpose') or 'a block'} "
                             f"(host {err.owner.get('host')}, pid {err.owner.get('pid')}, since "
                             f"{err.owner.get('started')}); wait for it, use another --out, or delete "
                             f"{path} if that process is gone") from None
        try:
            yield
        finally:
            lock.release()

    return held()


def compute_block(number: int, params: BlockParameters | dict | None = None,
                  progress: bool = True) -> tuple[Path, list[RunSpec]]:
    """Run (or resume) block ``number``; write ``out_dir/blockN.nc`` and the analysis logs.

    ``params``: validated ``BlockParameters`` or a dict of them (validated here, before any
    run). Finished runs in ``out_dir/runs`` are reused. Raises ``BlockInUse`` when another
    block holds the output folder. Returns the block file's path and the planned run specs;
    ``flyvis_study.run_block`` wraps this and returns the ``Block`` that ``open_block`` gives.
    """
    block = block_definition(number)
    params = params if isinstance(params, BlockParameters) else block_parameters(number, **(params or {}))
    specs = plan_block(number, params)
    out_dir = project_path(params.out_dir)
    with block_lock(out_dir, number):
        if params.only_finished:
            specs = _finished(number, specs, out_dir)
        return _run_locked(number, block, params, specs, out_dir, progress), specs


def _finished(number: int, specs: list[RunSpec], out_dir: Path) -> list[RunSpec]:
    """The specs whose runs are finished in ``out_dir`` (``only_finished``); none is an error."""
    done = [s for s in specs if is_finished(s, out_dir)]
    if not done:
        raise BlockParameterError(f"only_finished: none of block {number}'s {len(specs)} runs is finished in "
                                  f"{out_dir / 'runs'} (train some, or bring them back with `flyvis-study window`)")
    return done


def _run_locked(number, block, params, specs, out_dir: Path, progress: bool) -> Path:
    repairs_log = out_dir / REPAIRS_LOG  # repairs of this block's files go there (integrity.repaired)
    previous = os.environ.get(REPAIRS_ENV)
    os.environ[REPAIRS_ENV] = str(repairs_log)  # before the local workers start: they inherit it
    start = repairs_log.stat().st_size if repairs_log.is_file() else 0
    client = make_client(workers=params.workers, scheduler=params.scheduler or None)
    write_block_status(out_dir, number, dashboard_link(client) if client is not None else None)
    try:
        paths = run_many(specs, out_dir, client=client, progress=progress, stack=params.runs_per_stack)
    finally:
        if client is not None:
            close_client(client, close_cluster=not params.scheduler)
        if previous is None:
            os.environ.pop(REPAIRS_ENV, None)
        else:
            os.environ[REPAIRS_ENV] = previous
    repairs, _ = repairs_since(repairs_log, start)
    configs = {s.label: s.overrides for s in specs}
    attrs = {"title": block.title, "preset": params.preset, "base_config": block.base_config,
             "configs": json.dumps(configs), "parameters": params.model_dump_json(),
             "repairs": json.dumps(repairs), **provenance(params.device)}
    ds = block_dataset(paths, number, attrs, specs)
    nc_path = out_dir / f"block{number}.nc"
    save_block(ds, nc_path)
    append_analysis_logs(ds, out_dir, block)
    return nc_path
