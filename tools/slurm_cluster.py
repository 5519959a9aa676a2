"""A Dask cluster of SLURM GPU jobs for flyvis_study blocks (dask-jobqueue), kept up until Enter.

Run it on the login node, inside the environment the jobs will use
(``pip install -e ".[cluster]"``)::

    python tools/slurm_cluster.py --queue gpu --account mylab --jobs 4 --gpus-per-job 1

It prints the scheduler address; from another shell on the login node::

    flyvis-study block 1 --preset full -p device=cuda -p replicates=12 \\
        -p scheduler=tcp://LOGIN-NODE:8786 --out reports/full

Each SLURM job runs one Dask worker per GPU (``--gres=gpu:G``, ``processes=G``), one thread
per worker, and advertises the resource ``GPU=1`` per worker: a CUDA run asks for ``GPU: 1``
(``study.runner``), so there is never more than one run per GPU. A job that ends (walltime,
preemption) takes its workers with it; Dask reschedules their runs on the others, and a run
that was lost more often than ``distributed.scheduler.allowed-failures`` is recorded as an
``infrastructure`` failure and recomputed by the next ``flyvis-study block`` on the same
``--out``. Interrupted runs resume from their last end-of-epoch checkpoint. The dataset cache
(``FLYVIS_STUDY_CACHE``) and ``--out`` must be on a file system every node sees.
"""

from __future__ import annotations

import argparse


def make_cluster(queue: str, account: str | None, gpus_per_job: int = 1, cores_per_gpu: int = 4,
                 memory_per_gpu: str = "48GB", walltime: str = "08:00:00", port: int = 8786,
                 dashboard: str = ":8787", prologue: list[str] | None = None):
    """A ``dask_jobqueue.SLURMCluster`` whose jobs hold ``gpus_per_job`` GPUs, one worker per GPU."""
    from dask_jobqueue import SLURMCluster  # noqa: PLC0415 - dask-jobqueue is the optional cluster extra

    gpus = max(1, int(gpus_per_job))
    return SLURMCluster(
        queue=queue, account=account, walltime=walltime,
        cores=cores_per_gpu * gpus, processes=gpus, memory=f"{int(memory_per_gpu[:-2]) * gpus}GB",
        job_extra_directives=[f"--gres=gpu:{gpus}"],
        worker_extra_args=["--resources", "GPU=1", "--nthreads", "1"],
        job_script_prologue=prologue or [],
        scheduler_options={"port": port, "dashboard_address": dashboard},
    )


def main() -> None:  # pragma: no cover - interactive
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--queue", required=True, help="SLURM partition with GPUs")
    ap.add_argument("--account", default=None)
    ap.add_argument("--jobs", type=int, default=1, help="SLURM jobs to start")
    ap.add_argument("--gpus-per-job", type=int, default=1)
    ap.add_argument("--walltime", default="08:00:00")
    ap.add_argument("--port", type=int, default=8786)
    ap.add_argument("--prologue", action="append", default=[],
                    help="shell line run before the worker starts, e.g. 'source ~/venvs/flyvis/bin/activate'")
    args = ap.parse_args()
    cluster = make_cluster(args.queue, args.account, args.gpus_per_job, walltime=args.walltime, port=args.port,
                           prologue=args.prologue)
    cluster.scale(jobs=args.jobs)
    print(f"scheduler {cluster.scheduler_address}\ndashboard {cluster.dashboard_link}\n"
          f"job script:\n{cluster.job_script()}")
    input("Enter stops the cluster (its jobs are cancelled)\n")
    cluster.close()


if __name__ == "__main__":  # pragma: no cover
    main()
