"""A training run's progress file, ``run_dir/progress.json``, for whoever watches the run.

Rewritten atomically at every metrics.log row; ``study.progress`` reads it to show a block's
live progress.
"""

from __future__ import annotations

import time
from pathlib import Path

from flyvis_study.atomic import write_json_atomic

RUN_PROGRESS = "progress.json"


def write_run_progress(run_dir: Path, epoch: int, iteration: int, n_epochs: int, n_iterations: int, phase: str,
                       r2: dict) -> None:
    """``run_dir/progress.json`` after ``iteration`` (0-based) of ``epoch`` (of ``n_epochs`` x ``n_iterations``)."""
    done = (epoch * n_iterations + iteration + 1) / (n_epochs * n_iterations)
    write_json_atomic(run_dir / RUN_PROGRESS, {
        "epoch": epoch, "n_epochs": n_epochs, "iteration": iteration, "n_iterations_per_epoch": n_iterations,
        "phase": phase, "connectivity_r2": r2.get("connectivity_r2"), "vrest_r2": r2.get("vrest_r2"),
        "fraction_done": done, "updated": time.time()})
