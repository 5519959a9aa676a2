"""One run's training state: what a checkpoint holds, how an epoch starts and ends, the result.

``RunState.open`` builds the model (training seed, stream 1), the optimiser, the batch
sampler (stream 2) and the silent-input anchor's sampler (stream 3), and restores all of
them, with the metrics.log rows, coefficients, loss history and training time, from the
run's last good checkpoint. Per epoch e the loop calls ``begin_epoch(e)`` (the epoch's
coefficients, logged, its Niter x B frame indices, drawn at once from the sampler, its loss
buffer and its first iteration), ``silent_voltages()`` once per step, ``log_row`` at the
metrics.log iterations, ``save_partial`` when it checkpoints within the epoch, and
``end_epoch(e, losses)`` (loss history kept, checkpoint written); ``finish`` writes the run's
outputs. ``train.loop.train`` drives one state; ``stacking.train`` drives several.

Resuming within an epoch (``checkpoints/partial.pt``): the sampler is set back to its state at
the epoch's start and the epoch's batches are drawn again (the same ones), the loss buffer
and the records are restored, and training goes on at the next iteration; the model, Adam's
moments and the anchor's sampler are those after the saved step. So a run cut anywhere and
resumed on the same machine and thread count is bitwise the run never cut (tested).
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from flyvis_study.atomic import atomic_path, write_json_atomic, write_text_atomic
from flyvis_study.config import RunConfig
from flyvis_study.model.gnn import FlyVisGNN
from flyvis_study.train.checkpoints import (
    good_partial,
    latest_good_checkpoint,
    remove_partial,
    save_checkpoint,
    save_partial,
)
from flyvis_study.train.monitor import LOG_COLUMNS, InLoopEvaluator
from flyvis_study.train.optimizer import build_optimizer
from flyvis_study.train.progress import write_run_progress
from flyvis_study.train.schedule import coefficients, log_iterations
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
class TrainResult:
    model: FlyVisGNN
    diverged: bool  # non-finite loss or parameters (``failures.FailureKind.DIVERGED``)
    reason: str
    log_rows: list[dict]
    loss: np.ndarray
    coefficients: list[dict]
    training_time_s: float
    data: TrainingData


@dataclass
class RunState:
    """A run's model, optimiser, samplers and records (module docstring); ``epoch``: the first
    epoch still to train (0, or the one after the restored checkpoint's)."""

    cfg: RunConfig
    dataset: Dataset
    run_dir: Path
    data: TrainingData
    model: FlyVisGNN
    optimizer: torch.optim.Optimizer
    sampler: torch.Generator
    silent_sampler: torch.Generator
    evaluator: InLoopEvaluator
    n_iter: int
    joint_iters: int
    log_at: frozenset[int]
    epoch: int = 0
    elapsed: float = 0.0  # training time of earlier sessions (from the checkpoint)
    rows: list[dict] = field(default_factory=list)
    losses: list[np.ndarray] = field(default_factory=list)
    coeff_log: list[dict] = field(default_factory=list)
    diverged: bool = False
    reason: str = ""
    t0: float = field(default_factory=time.perf_counter)
    t_end: float | None = None  # set by finish()
    partial: dict | None = None  # a within-epoch checkpoint of epoch ``epoch``, to resume from
    epoch_start_sampler: torch.Tensor | None = None  # the sampler's state before the epoch's draw

    @classmethod
    def open(cls, cfg: RunConfig, dataset: Dataset, run_dir: str | Path, device: str = "cpu",
             dtype: torch.dtype = torch.float32, resume: bool = True) -> RunState:
        """A fresh state in ``run_dir`` (config.json written), restored from its last good checkpoint
        when ``resume``."""
        dev = torch.device(device)
        run_dir = Path(run_dir)
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_dir / "config.json", cfg.to_json())
        data = TrainingData(dataset, dev, dtype, cfg.training.derivative_target, cfg.simulation.dt)
        model = build_model(cfg, dataset, dev).to(dtype)
        n_iter = cfg.n_iterations(dataset.n_train)
        state = cls(cfg, dataset, run_dir, data, model, build_optimizer(model, cfg, dev),
                    seeded_generator(cfg.training.seed, 2), seeded_generator(cfg.training.seed, 3),
                    InLoopEvaluator(data, dataset, cfg.evaluation.in_loop_points, cfg.evaluation.n_gain_frames),
                    n_iter, cfg.joint_iterations(dataset.n_train), frozenset(log_iterations(n_iter)))
        saved = latest_good_checkpoint(run_dir, dev) if resume else None
        if saved is not None:
            state.model.load_state_dict(saved["model"])
            state.optimizer.load_state_dict(saved["optimizer"])
            state.sampler.set_state(saved["sampler"])
            if "silent_sampler" in saved:
                state.silent_sampler.set_state(saved["silent_sampler"])
            state.rows, state.coeff_log = saved["log_rows"], saved["coefficients"]
            state.losses = [np.asarray(saved["loss"], dtype=np.float32)]
            state.epoch, state.elapsed = saved["epoch"] + 1, saved["training_time_s"]
        partial = good_partial(run_dir, dev) if resume else None
        if partial is not None and partial["epoch"] == state.epoch:
            state.model.load_state_dict(partial["model"])
            state.optimizer.load_state_dict(partial["optimizer"])
            state.silent_sampler.set_state(partial["silent_sampler"])
            state.rows, state.coeff_log = partial["log_rows"], partial["coefficients"]
            state.losses = [np.asarray(partial["loss"], dtype=np.float32)] if len(partial["loss"]) else []
            state.elapsed, state.partial = partial["training_time_s"], partial
        return state

    @property
    def xnorm(self) -> float:
        return self.data.stats.xnorm

    @property
    def steps_left(self) -> int:
        """Optimiser steps still to take (from the resumed iteration of epoch ``epoch``)."""
        done = self.partial["iteration"] + 1 if self.partial is not None else 0
        return max(0, max(0, self.cfg.training.n_epochs - self.epoch) * self.n_iter - done)

    @property
    def training_time_s(self) -> float:
        """Training time so far: earlier sessions' (from the checkpoint) plus this one's wall time."""
        end = time.perf_counter() if self.t_end is None else self.t_end
        return self.elapsed + end - self.t0

    def begin_epoch(self, epoch: int) -> tuple[dict[str, float], torch.Tensor | np.ndarray, torch.Tensor, int]:
        """The epoch's regulariser coefficients (logged), its frame indices (Niter, B), its loss
        buffer (Niter,) and the first iteration to train (0, or the one after a within-epoch
        checkpoint's)."""
        coeffs = coefficients(self.cfg.training, epoch)
        resumed = self.partial is not None and self.partial["epoch"] == epoch
        if resumed:
            self.sampler.set_state(self.partial["sampler_epoch_start"])
        else:
            self.coeff_log.append({"epoch": epoch, **coeffs})
        self.epoch_start_sampler = self.sampler.get_state()
        draws = torch.randint(0, self.data.frames.shape[0], (self.n_iter, self.cfg.training.batch_size),
                              generator=self.sampler)
        batches = self.data.frames[draws.to(self.data.frames.device)]
        losses = torch.zeros(self.n_iter, device=self.model.W.device, dtype=self.model.W.dtype)
        first = 0
        if resumed:
            done = torch.as_tensor(self.partial["epoch_loss"])
            losses[: done.numel()] = done.to(losses)
            first, self.partial = done.numel(), None
        return coeffs, batches if self.data.resident else batches.numpy(), losses, first

    def silent_voltages(self) -> torch.Tensor | None:
        """The silent-input anchor's voltages (N,) of one step, drawn uniformly in
        [g_phi_silent_low, g_phi_silent_high] from the run's own stream (None when the anchor is off)."""
        t = self.cfg.training
        if t.coeff_g_phi_silent == 0:
            return None
        u = torch.rand(self.data.n_neurons, generator=self.silent_sampler, dtype=torch.float64)
        return (t.g_phi_silent_low + (t.g_phi_silent_high - t.g_phi_silent_low) * u).to(self.model.W)

    def log_row(self, epoch: int, iteration: int, phase: str, losses: torch.Tensor) -> dict | None:
        """At a metrics.log iteration: stop a diverged run (``diverged``, None returned) or
        evaluate the in-loop R2, append the row, rewrite metrics.log and progress.json."""
        seen = losses[: iteration + 1]
        bad = ~torch.isfinite(seen)
        if bool(bad.any()):
            self.diverged = True
            self.reason = f"non-finite loss at epoch {epoch}, iteration {int(torch.nonzero(bad)[0])}"
            self.losses.append(seen.cpu().numpy())
            return None
        r2 = self.evaluator(self.model)
        self.rows.append({"epoch": epoch, "iteration": iteration, **r2, "phase": phase})
        _write_log(self.run_dir / "metrics.log", self.rows)
        write_run_progress(self.run_dir, epoch, iteration, self.cfg.training.n_epochs, self.n_iter, phase, r2)
        return r2

    def save_partial(self, epoch: int, iteration: int, losses: torch.Tensor) -> None:
        """The within-epoch checkpoint after ``iteration`` of ``epoch`` (``train.checkpoints``)."""
        save_partial(self.run_dir, {
            "epoch": epoch, "iteration": iteration, "epoch_loss": losses[: iteration + 1].cpu(),
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "sampler_epoch_start": self.epoch_start_sampler, "silent_sampler": self.silent_sampler.get_state(),
            "config": json.loads(self.cfg.to_json()), "log_rows": self.rows, "coefficients": self.coeff_log,
            "loss": np.concatenate(self.losses) if self.losses else np.zeros(0, np.float32),
            "training_time_s": self.training_time_s})

    def end_epoch(self, epoch: int, losses: torch.Tensor) -> None:
        """Keep the epoch's losses (Niter,), write its checkpoint and drop the within-epoch one."""
        self.losses.append(losses.cpu().numpy())
        self.epoch = epoch + 1
        if self.cfg.training.checkpoint_every_epoch:
            save_checkpoint(self.run_dir, epoch, {
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "sampler": self.sampler.get_state(), "silent_sampler": self.silent_sampler.get_state(),
                "config": json.loads(self.cfg.to_json()),
                "log_rows": self.rows, "coefficients": self.coeff_log,
                "loss": np.concatenate(self.losses), "training_time_s": self.training_time_s})
        remove_partial(self.run_dir)

    def finish(self) -> TrainResult:
        """Write loss.npy, coefficients.json and metrics.log; check the parameters; the result."""
        self.t_end = time.perf_counter()
        loss_all = np.concatenate(self.losses) if self.losses else np.zeros(0, np.float32)
        np.save(self.run_dir / "loss.npy", loss_all.astype(np.float32))
        write_json_atomic(self.run_dir / "coefficients.json", self.coeff_log)
        _write_log(self.run_dir / "metrics.log", self.rows)
        if not self.diverged and not all(math.isfinite(p.detach().double().sum().item())
                                         for p in self.model.parameters()):
            self.diverged, self.reason = True, "non-finite parameters after training"
        return TrainResult(self.model, self.diverged, self.reason, self.rows, loss_all, self.coeff_log,
                           self.training_time_s, self.data)


def _write_log(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(LOG_COLUMNS)
        for r in rows:
            w.writerow([r["epoch"], r["iteration"], f"{r['connectivity_r2']:.6f}", f"{r['vrest_r2']:.6f}",
                        f"{r['tau_r2']:.6f}", r["phase"]])
