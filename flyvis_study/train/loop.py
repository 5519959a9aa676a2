"""One trainer for standard and two-stage training of ``FlyVisGNN``.

Per iteration: draw ``batch_size`` frame indices uniformly from the finite frames in
[0, n_frames - 5) with the training generator; predict dv/dt for the stacked frames;
loss = ||pred - y||_2 (Euclidean norm over all B x N entries, unsquared) + regularisers
(computed once, on the first frame of the batch); one Adam step. The learning rates follow
the phase schedule of ``train.schedule`` (switch before the step of iteration joint_iters,
restart every epoch, Adam state kept); regulariser coefficients follow its per-epoch rules.

The hot loop does no host-device synchronisation except at metrics.log rows (13 + 1 per
epoch), where the loss history is checked for NaN/inf (a diverged run stops and is
recorded as failed with its reason) and conn/V_rest/tau R2 are evaluated (``train.monitor``).

A run can be cut and resumed (``stop_at``, ``checkpoint_every_s``): it then writes a
within-epoch checkpoint (``train.checkpoints``) every ``checkpoint_every_s`` seconds of wall
time and, once ``time.monotonic()`` passes ``stop_at``, after the step in progress, and raises
``TrainingCut``; the next ``train`` on the same folder goes on from there, bitwise as if never
cut (same machine and thread count; tested).

Outputs in ``run_dir``: config.json, metrics.log (CSV), progress.json (``train.progress``),
loss.npy, coefficients.json, checkpoints/epoch_{k}.pt (model + optimiser + generator state +
config; a run resumes from its last one; ``train.state``), and, via
``evaluation.evaluate``/``study.run``, metrics.json and plots.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm.auto import tqdm

from flyvis_study.config import RunConfig
from flyvis_study.train.schedule import phase_of
from flyvis_study.train.state import RunState, TrainResult, build_model, seeded_generator
from flyvis_study.train.steps import make_step
from flyvis_study.world.dataset import Dataset

__all__ = ["TrainResult", "TrainingCut", "build_model", "seeded_generator", "train"]


class TrainingCut(Exception):
    """A run stopped at its ``stop_at`` time, its state saved in a within-epoch checkpoint."""

    def __init__(self, run_dir: Path, epoch: int, iteration: int, steps_left: int):
        super().__init__(f"{run_dir.name}: cut after iteration {iteration} of epoch {epoch}, "
                         f"{steps_left} steps left (resumes from checkpoints/partial.pt)")
        self.run_dir, self.epoch, self.iteration, self.steps_left = run_dir, epoch, iteration, steps_left


def train(cfg: RunConfig, dataset: Dataset, run_dir: str | Path, device: str = "cpu",
          progress: bool = True, resume: bool = True,
          step_callback: Callable[[int, int, str, torch.optim.Optimizer], None] | None = None,
          dtype: torch.dtype = torch.float32, stop_at: float | None = None,
          checkpoint_every_s: float | None = None) -> TrainResult:
    """Train one run (standard or two-stage per ``cfg.training.alternate_training``).

    ``step_callback(epoch, iteration, phase, optimizer)``, if given, runs after every
    optimiser step (for tests and instrumentation; it must not synchronise the device).
    ``dtype``: the training precision (float32; float64 for equivalence tests).
    ``stop_at`` (a ``time.monotonic()`` value) and ``checkpoint_every_s``: cut and resume
    (module docstring); raises ``TrainingCut`` when cut.
    """
    run = RunState.open(cfg, dataset, run_dir, device, dtype, resume)
    step = make_step(run.model, run.optimizer, run.data, cfg, run.xnorm)
    n_epochs, n_iter = cfg.training.n_epochs, run.n_iter
    bar = tqdm(total=n_epochs * n_iter, initial=n_epochs * n_iter - run.steps_left, disable=not progress,
               desc="train", unit="it", dynamic_ncols=True, leave=False)
    next_save = time.monotonic() + checkpoint_every_s if checkpoint_every_s is not None else None
    for epoch in range(run.epoch, n_epochs):
        coeffs, batches, losses, first = run.begin_epoch(epoch)
        phase = None
        for it in range(first, n_iter):
            if phase_of(it, run.joint_iters) != phase:  # learning rates and coefficients of the phase
                phase = phase_of(it, run.joint_iters)
                step.configure(coeffs, phase, epoch)
            losses[it] = step(batches[it], run.silent_voltages())
            if step_callback is not None:
                step_callback(epoch, it, phase, run.optimizer)
            bar.update(1)
            if it in run.log_at:
                r2 = run.log_row(epoch, it, phase, losses)
                if r2 is None:  # diverged: recorded as failed
                    bar.close()
                    return run.finish()
                bar.set_postfix(phase=phase, loss=f"{float(losses[it]):.3g}",
                                conn=f"{r2['connectivity_r2']:.3f}", vrest=f"{r2['vrest_r2']:.3f}")
            if (stop_at is not None or next_save is not None) and it < n_iter - 1:
                now = time.monotonic()
                cut = stop_at is not None and now >= stop_at
                if cut or (next_save is not None and now >= next_save):
                    run.save_partial(epoch, it, losses)
                    next_save = now + checkpoint_every_s if checkpoint_every_s is not None else None
                if cut:
                    bar.close()
                    steps_left = (n_epochs - epoch) * n_iter - it - 1
                    raise TrainingCut(run.run_dir, epoch, it, steps_left)
        run.end_epoch(epoch, losses)
    bar.close()
    return run.finish()
