"""One trainer for standard and two-stage training of ``FlyVisGNN``.

Per iteration: draw ``batch_size`` frame indices uniformly from the finite frames in
[0, n_frames - 5) with the training generator; predict dv/dt for the stacked frames;
loss = ||pred - y||_2 (Euclidean norm over all B x N entries, unsquared) + regularisers
(computed once, on the first frame of the batch); one Adam step. The learning rates follow
the phase schedule of ``train.schedule`` (switch before the step of iteration joint_iters,
restart every epoch, Adam state kept); regulariser coefficients follow its per-epoch rules.

The hot loop does no host-device synchronisation except at metrics.log rows (13 + 1 per
epoch), where the loss history is checked for NaN/inf (a diverged run stops and is
recorded as failed with its reason) and conn/V_rest/tau R2 are evaluated.

Outputs in ``run_dir``: config.json, metrics.log (CSV), progress.json (``train.progress``),
loss.npy, coefficients.json, checkpoints/epoch_{k}.pt (model + optimiser + generator state +
config; a run resumes from its last one), and, via ``evaluation.evaluate``/``study.run``, metrics.json and plots.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from flyvis_study.atomic import atomic_path, write_json_atomic, write_text_atomic
from flyvis_study.config import RunConfig
from flyvis_study.evaluation.names import LOG_COLUMNS
from flyvis_study.evaluation.recovery import (
    connectivity_metrics,
    gain_frame_indices,
    recover_parameters,
    tau_metrics,
    vrest_metrics,
)
from flyvis_study.model.gnn import FlyVisGNN
from flyvis_study.train.checkpoints import latest_good_checkpoint, save_checkpoint
from flyvis_study.train.optimizer import build_optimizer
from flyvis_study.train.progress import write_run_progress
from flyvis_study.train.schedule import coefficients, log_iterations, phase_of
from flyvis_study.train.steps import make_step
from flyvis_study.world.dataset import Dataset
from flyvis_study.world.training_data import TrainingData


def seeded_generator(seed: int, stream: int, device: str | torch.device = "cpu") -> torch.Generator:
    """An explicit torch.Generator for one random stream of a seed (no global seeding)."""
    gen = torch.Generator(device=device)
    gen.manual_seed(int(np.random.SeedSequence([seed, stream]).generate_state(1, dtype=np.uint64)[0] >> 1))
    return gen


def build_model(cfg: RunConfig, dataset: Dataset, device: torch.device) -> FlyVisGNN:
    con = dataset.connectome
    model = FlyVisGNN(con.n_neurons, torch.from_numpy(con.edge_src), torch.from_numpy(con.edge_tgt),
                      cfg.model, generator=seeded_generator(cfg.training.seed, 1),
                      mlp_backward=cfg.training.mlp_backward)
    return model.to(device)


@dataclass
class InLoopEvaluator:
    """Cheap R2 evaluation at metrics.log rows (activity stats and gain frames cached)."""

    data: TrainingData
    dataset: Dataset
    n_points: int
    n_gain_frames: int
    v_gain: torch.Tensor = field(init=False)
    I_gain: torch.Tensor = field(init=False)

    def __post_init__(self):
        idx = gain_frame_indices(self.data.v.shape[0], self.n_gain_frames)
        self.v_gain, self.I_gain, _ = self.data.rows(idx)

    def __call__(self, model: FlyVisGNN) -> dict:
        gt = self.dataset.ground_truth
        rec = recover_parameters(model, self.data.stats, self.v_gain, self.I_gain, self.n_points,
                                 corrected=False)
        conn = connectivity_metrics(gt.W, rec.W_corrected, model.W.detach().cpu().numpy())
        return {"connectivity_r2": conn["connectivity_R2"],
                "vrest_r2": vrest_metrics(gt.V_rest, rec.V_rest_hat, self.dataset.connectome.node_type)["V_rest_R2"],
                "tau_r2": tau_metrics(gt.tau, rec.tau_hat)["tau_R2"]}


@dataclass
class TrainResult:
    model: FlyVisGNN
    status: str  # "ok" or "failed"
    reason: str
    log_rows: list[dict]
    loss: np.ndarray
    coefficients: list[dict]
    training_time_s: float
    data: TrainingData


def _write_log(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(LOG_COLUMNS)
        for r in rows:
            w.writerow([r["epoch"], r["iteration"], f"{r['connectivity_r2']:.6f}", f"{r['vrest_r2']:.6f}",
                        f"{r['tau_r2']:.6f}", r["phase"]])


class RunTrainer:
    """One run's training state, advanced one optimiser step at a time by whoever computes the step.

    ``train`` drives one ``RunTrainer`` with a single-run step; ``stacking.train.train_stack``
    drives several with one stacked step. Per step the driver reads ``batch()`` (the frame
    indices of the current iteration; ``phase_changed`` says whether ``coeffs`` / ``phase``
    must be applied first), computes the step, and hands its loss to ``record``, which keeps
    the loss, writes metrics.log rows at the logged iterations (stopping a diverged run), and
    at the end of an epoch saves the checkpoint and draws the next epoch's batches. ``done``
    is set when the last epoch ends or the run diverged; ``finish()`` writes loss.npy,
    coefficients.json and metrics.log and returns the ``TrainResult``.
    """

    def __init__(self, cfg: RunConfig, dataset: Dataset, run_dir: str | Path, device: str = "cpu",
                 resume: bool = True, dtype: torch.dtype = torch.float32,
                 step_callback: Callable[[int, int, str, torch.optim.Optimizer], None] | None = None):
        dev = torch.device(device)
        self.cfg, self.dataset, self.device, self.dtype = cfg, dataset, dev, dtype
        self.run_dir = run_dir = Path(run_dir)
        self.step_callback = step_callback
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_dir / "config.json", cfg.to_json())
        self.n_iter = cfg.n_iterations(dataset.n_train)
        self.joint_iters = cfg.joint_iterations(dataset.n_train)
        self.log_at = set(log_iterations(self.n_iter))
        self.data = TrainingData(dataset, dev, dtype, cfg.training.derivative_target, cfg.simulation.dt)
        self.model = build_model(cfg, dataset, dev).to(dtype)
        self.optimizer = build_optimizer(self.model, cfg, dev)
        self.sampler = seeded_generator(cfg.training.seed, 2)
        self.silent_sampler = seeded_generator(cfg.training.seed, 3)  # the silent-input anchor's voltages
        self.evaluator = InLoopEvaluator(self.data, dataset, cfg.evaluation.in_loop_points,
                                         cfg.evaluation.n_gain_frames)
        self.xnorm = self.data.stats.xnorm
        self.rows: list[dict] = []
        self.losses: list[np.ndarray] = []
        self.coeff_log: list[dict] = []
        self.epoch, self.elapsed = 0, 0.0
        state = latest_good_checkpoint(run_dir, dev) if resume else None
        if state is not None:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.sampler.set_state(state["sampler"])
            if "silent_sampler" in state:
                self.silent_sampler.set_state(state["silent_sampler"])
            self.rows, self.coeff_log = state["log_rows"], state["coefficients"]
            self.losses = [np.asarray(state["loss"], dtype=np.float32)]
            self.epoch, self.elapsed = state["epoch"] + 1, state["training_time_s"]
        self.status, self.reason = "ok", ""
        self.iteration = 0
        self.phase: str | None = None
        self.phase_changed = False
        self.bar = None
        self.t0 = time.perf_counter()
        self.t_end: float | None = None  # set by finish()
        self.done = self.epoch >= cfg.training.n_epochs
        if not self.done:
            self._begin_epoch()

    @property
    def steps_left(self) -> int:
        """Optimiser steps this run still has to take (0 once done)."""
        if self.done:
            return 0
        return (self.cfg.training.n_epochs - self.epoch) * self.n_iter - self.iteration

    def _begin_epoch(self) -> None:
        t = self.cfg.training
        self.coeffs = coefficients(t, self.epoch)
        self.coeff_log.append({"epoch": self.epoch, **self.coeffs})
        n_frames = self.data.frames.shape[0]
        draws = torch.randint(0, n_frames, (self.n_iter, t.batch_size), generator=self.sampler)
        self.batches = self.data.frames[draws.to(self.data.frames.device)]
        if not self.data.resident:
            self.batches = self.batches.numpy()
        self.loss_buf = torch.zeros(self.n_iter, device=self.device, dtype=self.dtype)
        self.iteration, self.phase = 0, None

    def batch(self):
        """Frame indices (batch_size,) of the current iteration; sets ``phase`` and ``phase_changed``."""
        new_phase = phase_of(self.iteration, self.joint_iters)
        self.phase_changed = new_phase != self.phase
        self.phase = new_phase
        return self.batches[self.iteration]

    def silent_voltages(self) -> torch.Tensor | None:
        """The silent-input anchor's voltages (N,) of the current iteration, drawn uniformly in
        [g_phi_silent_low, g_phi_silent_high] from the run's own stream (None when the anchor is off)."""
        t = self.cfg.training
        if t.coeff_g_phi_silent == 0:
            return None
        u = torch.rand(self.data.n_neurons, generator=self.silent_sampler, dtype=torch.float64)
        v = t.g_phi_silent_low + (t.g_phi_silent_high - t.g_phi_silent_low) * u
        return v.to(self.device, self.dtype)

    def record(self, loss: torch.Tensor) -> None:
        """Keep the current iteration's loss (0-d, detached) and move on (see the class docstring)."""
        it = self.iteration
        self.loss_buf[it] = loss
        if self.step_callback is not None:
            self.step_callback(self.epoch, it, self.phase, self.optimizer)
        if self.bar is not None:
            self.bar.update(1)
        if it in self.log_at:
            finite = bool(torch.isfinite(self.loss_buf[: it + 1]).all())
            if not finite:
                bad = int(torch.nonzero(~torch.isfinite(self.loss_buf[: it + 1]))[0])
                self.status, self.reason = "failed", f"non-finite loss at epoch {self.epoch}, iteration {bad}"
                self.losses.append(self.loss_buf[: it + 1].cpu().numpy())
                self.done = True
                return
            r2 = self.evaluator(self.model)
            self.rows.append({"epoch": self.epoch, "iteration": it, **r2, "phase": self.phase})
            _write_log(self.run_dir / "metrics.log", self.rows)
            write_run_progress(self.run_dir, self.epoch, it, self.cfg.training.n_epochs, self.n_iter, self.phase, r2)
            if self.bar is not None:
                self.bar.set_postfix(phase=self.phase, loss=f"{float(loss):.3g}",
                                     conn=f"{r2['connectivity_r2']:.3f}", vrest=f"{r2['vrest_r2']:.3f}")
        self.iteration += 1
        if self.iteration == self.n_iter:
            self._end_epoch()

    def _end_epoch(self) -> None:
        self.losses.append(self.loss_buf.cpu().numpy())
        if self.cfg.training.checkpoint_every_epoch:
            save_checkpoint(self.run_dir, self.epoch, {
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "sampler": self.sampler.get_state(), "silent_sampler": self.silent_sampler.get_state(),
                "config": json.loads(self.cfg.to_json()),
                "log_rows": self.rows, "coefficients": self.coeff_log,
                "loss": np.concatenate(self.losses), "training_time_s": self.training_time_s})
        self.epoch += 1
        if self.epoch >= self.cfg.training.n_epochs:
            self.done = True
        else:
            self._begin_epoch()

    @property
    def training_time_s(self) -> float:
        """Training time so far: earlier sessions' (from the checkpoint) plus this one's wall time."""
        end = time.perf_counter() if self.t_end is None else self.t_end
        return self.elapsed + end - self.t0

    def finish(self) -> TrainResult:
        """Write loss.npy, coefficients.json and metrics.log; check the parameters; the result."""
        self.t_end = time.perf_counter()
        loss_all = np.concatenate(self.losses) if self.losses else np.zeros(0, np.float32)
        np.save(self.run_dir / "loss.npy", loss_all.astype(np.float32))
        write_json_atomic(self.run_dir / "coefficients.json", self.coeff_log)
        _write_log(self.run_dir / "metrics.log", self.rows)
        if self.status == "ok" and not all(math.isfinite(p.detach().double().sum().item())
                                           for p in self.model.parameters()):
            self.status, self.reason = "failed", "non-finite parameters after training"
        return TrainResult(self.model, self.status, self.reason, self.rows, loss_all, self.coeff_log,
                           self.training_time_s, self.data)


def train(cfg: RunConfig, dataset: Dataset, run_dir: str | Path, device: str = "cpu",
          progress: bool = True, resume: bool = True,
          step_callback: Callable[[int, int, str, torch.optim.Optimizer], None] | None = None,
          dtype: torch.dtype = torch.float32) -> TrainResult:
    """Train one run (standard or two-stage per ``cfg.training.alternate_training``).

    ``step_callback(epoch, iteration, phase, optimizer)``, if given, runs after every
    optimiser step (for tests and instrumentation; it must not synchronise the device).
    ``dtype``: the training precision (float32; float64 for equivalence tests).
    """
    from tqdm.auto import tqdm

    run = RunTrainer(cfg, dataset, run_dir, device, resume, dtype, step_callback)
    step = make_step(run.model, run.optimizer, run.data, cfg, run.xnorm)
    t = cfg.training
    run.bar = tqdm(total=t.n_epochs * run.n_iter, initial=t.n_epochs * run.n_iter - run.steps_left,
                   disable=not progress, desc="train", unit="it", dynamic_ncols=True, leave=False)
    while not run.done:
        idx = run.batch()
        if run.phase_changed:
            step.configure(run.coeffs, run.phase, run.epoch)
        run.record(step(idx, run.silent_voltages()))
    run.bar.close()
    return run.finish()
