"""Execution of many runs: serial in-process, or on a Dask cluster; alone or in stacks.

``run_many(specs, out_root, client=None, stack=1)``: without a client, runs serially in this
process (the embedded default). With a ``dask.distributed.Client`` each spec becomes one task
``client.submit(run_one, spec, out_root, key=run_id, pure=False)`` (GPU runs ask for the
``GPU`` resource); each task writes its own run file and returns its path. With ``stack`` > 1,
runs that share a graph train together in stacks of up to ``stack`` runs (``stacking.train``,
``study.run.run_stack``): one in-process call, or one Dask task, per stack, each run's file
written as that run finishes. A task that dies with its worker (``KilledWorker`` after Dask's
``allowed-failures`` retries) or raises is recorded here as a failed run (failure kind
infrastructure; for a stack, its runs not yet written) and retried by the next run; the
other runs finish. Finished runs are skipped before submission, so an interrupted block
resumes where it stopped.

``make_client(workers=N)`` starts a process-based ``LocalCluster`` (one thread per worker; its
dashboard on a free loopback port when bokeh is installed, ``pip install "flyvis_study[cluster]"``);
``make_client(scheduler="tcp://host:8786")`` attaches to any running cluster (e.g. one
started with dask-jobqueue on SLURM/LSF). An unreachable address is a clear error.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tqdm.auto import tqdm

from flyvis_study.stacking.train import stack_key, stackable
from flyvis_study.study.run import is_finished, record_failed_run, run_one, run_stack
from flyvis_study.study.spec import RunSpec


class SchedulerError(RuntimeError):
    """The Dask scheduler could not be reached."""


def make_client(workers: int = 0, scheduler: str | None = None, timeout: float = 10.0):
    """A Dask client for ``scheduler`` (address) or a LocalCluster of ``workers``; None for serial."""
    if scheduler:
        from dask.distributed import Client  # noqa: PLC0415 - dask only when a cluster is used

        try:
            return Client(scheduler, timeout=f"{timeout}s")
        except (OSError, TimeoutError) as err:
            raise SchedulerError(f"scheduler {scheduler}: not reachable ({type(err).__name__}: {err})") from None
    if workers and workers > 0:
        import dask  # noqa: PLC0415 - dask only when a cluster is used
        from dask.distributed import Client, LocalCluster  # noqa: PLC0415 - dask only when a cluster is used

        # Dask's default MALLOC_TRIM_THRESHOLD_=65536 makes torch's many small CPU allocations
        # slower (docs/benchmarks.md); keep the thread limits only.
        environ = {k: v for k, v in dask.config.get("distributed.nanny.pre-spawn-environ").items()
                   if k != "MALLOC_TRIM_THRESHOLD_"}
        with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address="127.0.0.1:0")
        return Client(cluster)
    return None


def close_client(client, close_cluster: bool = True) -> None:
    """Close ``client`` and, if asked, the LocalCluster it started.

    Stopping workers that still hold torch makes Dask's nanny log "Worker process still alive
    after 4.0 seconds, killing" (they are killed, as intended); those lines are kept out of the
    reports by raising the nanny's log level for the duration of the close only.
    """
    cluster = getattr(client, "cluster", None)
    nanny = logging.getLogger("distributed.nanny")
    level = nanny.level
    nanny.setLevel(logging.ERROR)
    try:
        client.close()
        if cluster is not None and close_cluster:
            cluster.close()
    finally:
        nanny.setLevel(level)


def check_scheduler(address: str, timeout: float = 5.0) -> None:
    """Raise ``SchedulerError`` unless a Dask scheduler answers at ``address``."""
    client = make_client(scheduler=address, timeout=timeout)
    client.close()


def stacks(specs: list[RunSpec], size: int) -> list[list[RunSpec]]:
    """The specs in groups of at most ``size`` that can train as one stack (same
    ``stacking.train.stack_key`` and device), in spec order within and across groups; a run
    that cannot be stacked (``stacking.train.stackable``) trains alone."""
    groups: dict[tuple, list[RunSpec]] = {}
    for spec in specs:
        key = (stack_key(spec.config), spec.device) if stackable(spec.config) else ("alone", spec.run_id)
        groups.setdefault(key, []).append(spec)
    out = [g[k:k + size] for g in groups.values() for k in range(0, len(g), max(1, size))]
    order = {s.run_id: i for i, s in enumerate(specs)}
    return sorted(out, key=lambda g: order[g[0].run_id])


def lost_run(spec: RunSpec, out_root: Path, err: BaseException) -> str:
    """The run file of a spec whose task was lost: kept if the run finished before the loss
    (a stack writes each run as it finishes), else a failed run (retried by the next run)."""
    if is_finished(spec, out_root):
        return str(out_root / "runs" / spec.run_id / "run.nc")
    return record_failed_run(spec, out_root, err)


def run_many(specs: list[RunSpec], out_root: str | Path, client=None, progress: bool = True,
             stack: int = 1) -> list[str]:
    """Run every spec (skipping finished ones); returns the run-file paths in spec order.

    Specs with the same run id (the same resolved config and seeds, ``study.spec.run_id_of``)
    are one run, trained once; each gets its path. Unfinished runs train replicate by
    replicate (every cell's first seed pair, then every cell's second, ...), so that a block
    stopped part-way holds paired runs of every cell.

    ``stack`` > 1: the unfinished specs train in stacks of up to that many runs
    (``stacks``, ``study.run.run_stack``), one process (one Dask task) per stack.
    """
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    ids = [s.run_id for s in specs]
    first: dict[str, RunSpec] = {}
    for spec in specs:
        first.setdefault(spec.run_id, spec)  # one run per content key
    unique = list(first.values())
    paths: dict[str, str] = {}
    todo = []
    for spec in unique:
        if is_finished(spec, out_root):
            paths[spec.run_id] = str(out_root / "runs" / spec.run_id / "run.nc")
        else:
            todo.append(spec)
    todo.sort(key=lambda s: s.replicate)  # stable: cell order within a replicate
    groups = stacks(todo, stack) if stack > 1 else [[s] for s in todo]
    bar = tqdm(total=len(unique), initial=len(paths), desc="runs", unit="run", disable=not progress)

    def task(group: list[RunSpec]):
        return (run_one, group[0]) if len(group) == 1 else (run_stack, group)

    def collect(group: list[RunSpec], result) -> None:
        for spec, path in zip(group, [result] if len(group) == 1 else result):
            paths[spec.run_id] = path
        bar.update(len(group))

    if client is None:
        for group in groups:
            fn, arg = task(group)
            collect(group, fn(arg, out_root))
    else:
        from dask.distributed import as_completed  # noqa: PLC0415 - dask only when a cluster is used

        futures = {}
        for group in groups:
            fn, arg = task(group)
            resources = {"GPU": 1} if group[0].device.startswith("cuda") else None
            key = f"run-{group[0].run_id}" if len(group) == 1 else f"stack-{group[0].run_id}-x{len(group)}"
            futures[client.submit(fn, arg, str(out_root), key=key, pure=False, resources=resources)] = group
        for fut in as_completed(list(futures)):
            group = futures[fut]
            try:
                collect(group, fut.result())
            except Exception as err:  # noqa: BLE001 - e.g. KilledWorker: the task's workers died
                lost = [lost_run(s, out_root, err) for s in group]
                collect(group, lost if len(group) > 1 else lost[0])
    bar.close()
    return [paths[i] for i in ids]
