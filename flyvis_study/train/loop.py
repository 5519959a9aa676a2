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
        rec = recover_parameters(model, self.data.stats, self.v_gain, self.I_gain, self.n_points)
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


def train(cfg: RunConfig, dataset: Dataset, run_dir: str | Path, device: str = "cpu",
          progress: bool = True, resume: bool = True,
          step_callback: Callable[[int, int, str, torch.optim.Optimizer], None] | None = None) -> TrainResult:
    """Train one run (standard or two-stage per ``cfg.training.alternate_training``).

    ``step_callback(epoch, iteration, phase, optimizer)``, if given, runs after every
    optimiser step (for tests and instrumentation; it must not synchronise the device).
    """
    from tqdm.auto import tqdm

    dev = torch.device(device)
    run_dir = Path(run_dir)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "config.json", cfg.to_json())
    t = cfg.training
    n_iter = cfg.n_iterations(dataset.n_train)
    joint_iters = cfg.joint_iterations(dataset.n_train)
    log_at = set(log_iterations(n_iter))

    data = TrainingData(dataset, dev)
    model = build_model(cfg, dataset, dev)
    optimizer = build_optimizer(model, cfg, dev)
    sampler = seeded_generator(t.seed, 2)
    evaluator = InLoopEvaluator(data, dataset, cfg.evaluation.in_loop_points, cfg.evaluation.n_gain_frames)
    xnorm = data.stats.xnorm
    step = make_step(model, optimizer, data, cfg, xnorm)

    rows: list[dict] = []
    losses: list[np.ndarray] = []
    coeff_log: list[dict] = []
    start_epoch, elapsed = 0, 0.0
    state = latest_good_checkpoint(run_dir, dev) if resume else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        sampler.set_state(state["sampler"])
        rows, coeff_log = state["log_rows"], state["coefficients"]
        losses = [np.asarray(state["loss"], dtype=np.float32)]
        start_epoch, elapsed = state["epoch"] + 1, state["training_time_s"]

    status, reason = "ok", ""
    n_frames = data.frames.shape[0]
    total = t.n_epochs * n_iter
    bar = tqdm(total=total, initial=start_epoch * n_iter, disable=not progress, desc="train",
               unit="it", dynamic_ncols=True, leave=False)
    t0 = time.perf_counter()
    for epoch in range(start_epoch, t.n_epochs):
        coeffs = coefficients(t, epoch)
        coeff_log.append({"epoch": epoch, **coeffs})
        draws = torch.randint(0, n_frames, (n_iter, t.batch_size), generator=sampler)
        batches = data.frames[draws.to(data.frames.device)]
        if not data.resident:
            batches = batches.numpy()
        loss_buf = torch.zeros(n_iter, device=dev)
        phase = None
        for it in range(n_iter):
            new_phase = phase_of(it, joint_iters)
            if new_phase != phase:
                phase = new_phase
                step.configure(coeffs, phase)
            loss = step(batches[it])
            loss_buf[it] = loss
            if step_callback is not None:
                step_callback(epoch, it, phase, optimizer)
            bar.update(1)
            if it in log_at:
                finite = bool(torch.isfinite(loss_buf[: it + 1]).all())
                if not finite:
                    bad = int(torch.nonzero(~torch.isfinite(loss_buf[: it + 1]))[0])
                    status, reason = "failed", f"non-finite loss at epoch {epoch}, iteration {bad}"
                    losses.append(loss_buf[: it + 1].cpu().numpy())
                    break
                r2 = evaluator(model)
                rows.append({"epoch": epoch, "iteration": it, **r2, "phase": phase})
                _write_log(run_dir / "metrics.log", rows)
                write_run_progress(run_dir, epoch, it, t.n_epochs, n_iter, phase, r2)
                bar.set_postfix(phase=phase, loss=f"{float(loss):.3g}", conn=f"{r2['connectivity_r2']:.3f}",
                                vrest=f"{r2['vrest_r2']:.3f}")
        if status == "failed":
            break
        losses.append(loss_buf.cpu().numpy())
        elapsed_now = elapsed + time.perf_counter() - t0
        if t.checkpoint_every_epoch:
            save_checkpoint(run_dir, epoch, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "sampler": sampler.get_state(),
                "config": json.loads(cfg.to_json()), "log_rows": rows, "coefficients": coeff_log,
                "loss": np.concatenate(losses), "training_time_s": elapsed_now})
    bar.close()
    training_time = elapsed + time.perf_counter() - t0
    loss_all = np.concatenate(losses) if losses else np.zeros(0, np.float32)
    np.save(run_dir / "loss.npy", loss_all)
    write_json_atomic(run_dir / "coefficients.json", coeff_log)
    _write_log(run_dir / "metrics.log", rows)
    if status == "ok" and not all(math.isfinite(p.detach().float().sum().item()) for p in model.parameters()):
        status, reason = "failed", "non-finite parameters after training"
    return TrainResult(model, status, reason, rows, loss_all, coeff_log, training_time, data)
