"""One trainer for standard and two-stage training of ``FlyVisGNN``.

Per iteration: draw ``batch_size`` frame indices uniformly from the finite frames in
[0, n_frames - 5) with the training generator; predict dv/dt for the stacked frames;
loss = ||pred - y||_2 (Euclidean norm over all B x N entries, unsquared) + regularisers
(computed once, on the first frame of the batch); one Adam step. The learning rates follow
the phase schedule of ``schedule.py`` (switch before the step of iteration joint_iters,
restart every epoch, Adam state kept); regulariser coefficients follow its per-epoch rules.

The hot loop does no host-device synchronisation except at metrics.log rows (13 + 1 per
epoch), where the loss history is checked for NaN/inf (a diverged run stops and is
recorded as failed with its reason) and conn/V_rest/tau R2 are evaluated.

Outputs in ``run_dir``: config.json, metrics.log (CSV), loss.npy, coefficients.json,
checkpoints/epoch_{k}.pt (model + optimiser + generator state + config; a run resumes
from its last one), and, via ``evaluate``/``run.py``, metrics.json and plots.
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

from .allocator import keep_freed_memory, release_freed_memory
from .config import RunConfig
from .dataset import Dataset
from .metrics import (ActivityStats, connectivity_metrics, gain_frame_indices, recover_parameters,
                      tau_metrics, vrest_metrics)
from .model import FlyVisGNN
from .norms import norm_penalty
from .schedule import GROUPS, coefficients, learning_rates, log_iterations, phase_of

LOG_COLUMNS = ("epoch", "iteration", "connectivity_r2", "vrest_r2", "tau_r2", "phase")


def seeded_generator(seed: int, stream: int, device: str | torch.device = "cpu") -> torch.Generator:
    """An explicit torch.Generator for one random stream of a seed (no global seeding)."""
    gen = torch.Generator(device=device)
    gen.manual_seed(int(np.random.SeedSequence([seed, stream]).generate_state(1, dtype=np.uint64)[0] >> 1))
    return gen


class TrainingData:
    """Training arrays of a dataset: memory-mapped on CPU, resident on a GPU.

    ``batch(idx)`` returns (v, I, y), each (B, N) float32 on the device, where I is the
    photoreceptor input built from the stored hexal stimulus.
    """

    def __init__(self, dataset: Dataset, device: torch.device):
        self.device = device
        con = dataset.connectome
        self.v = dataset.array("train_v")
        self.y = dataset.array("train_y")
        self.hexals = dataset.array("train_stimulus")
        finite = np.asarray(dataset.array("train_finite"))
        n = self.v.shape[0]
        usable = np.flatnonzero(finite[: max(n - 5, 1)])
        if usable.size == 0:
            raise ValueError(f"dataset {dataset.path}: no finite training frames")
        self.frames = torch.from_numpy(usable)
        self.n_neurons = con.n_neurons
        self.input_nodes = torch.from_numpy(con.input_nodes).to(device)
        self.input_column = torch.from_numpy(con.node_column[con.input_nodes]).to(device)
        self.resident = device.type == "cuda"
        if self.resident:
            self.v = torch.from_numpy(np.ascontiguousarray(self.v)).to(device)
            self.y = torch.from_numpy(np.ascontiguousarray(self.y)).to(device)
            self.hexals = torch.from_numpy(np.ascontiguousarray(self.hexals)).to(device)
            self.frames = self.frames.to(device)
        self.stats = ActivityStats(np.asarray(dataset.array("train_v_mean")),
                                   np.asarray(dataset.array("train_v_std")))

    def inputs(self, hexals: torch.Tensor) -> torch.Tensor:
        """(B, C) hexals -> (B, N) external input (R1..R8 get their column's value)."""
        I = torch.zeros((hexals.shape[0], self.n_neurons), device=self.device)
        I[:, self.input_nodes] = hexals[:, self.input_column]
        return I

    def rows(self, idx) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(v, I, y) at frame indices ``idx`` (a tensor on the data's device or a numpy array)."""
        if self.resident:
            idx = torch.as_tensor(idx, device=self.device)
            return self.v[idx], self.inputs(self.hexals[idx]), self.y[idx]
        idx = np.asarray(idx)
        order = np.argsort(idx)  # sorted reads from the memory map
        inv = np.empty_like(order)
        inv[order] = np.arange(order.size)
        sidx = idx[order]
        take = lambda a: torch.from_numpy(np.ascontiguousarray(a[sidx])[inv]).to(self.device)  # noqa: E731
        return take(self.v), self.inputs(take(self.hexals)), take(self.y)


def regulariser(model: FlyVisGNN, v_frame: torch.Tensor, coeffs: dict[str, float], xnorm: float,
                edge_activation: Callable | None = None) -> torch.Tensor:
    """Sum of the regularisers (all norms unsquared) at one frame's voltages v_frame (N,).

    ``edge_activation(v, a)``: how g_phi^2 is evaluated (default ``model.edge_activation``;
    the naive baseline passes its plain per-row form).
    """
    edge_activation = edge_activation or model.edge_activation
    terms = []
    if coeffs["W_L1"] > 0:
        terms.append(coeffs["W_L1"] * model.W.abs().sum())
    elif coeffs["W_L2"] > 0:
        terms.append(coeffs["W_L2"] * torch.linalg.vector_norm(model.W))
    for name, mlp in (("g_phi", model.g_phi), ("f_theta", model.f_theta)):
        c1, c2 = coeffs[f"{name}_L1"], coeffs[f"{name}_L2"]
        if c1 > 0 or c2 > 0:  # sum over the MLP's tensors of c1 ||p||_1 + c2 ||p||_2 (norms.py: few kernels)
            terms.append(norm_penalty(list(mlp.parameters()), c1, c2))
    a = model.embedding.detach()
    if coeffs["g_phi_diff"] > 0:
        v = v_frame.detach()
        diff = edge_activation(v, a) - edge_activation(1.05 * v, a)
        terms.append(coeffs["g_phi_diff"] * torch.linalg.vector_norm(torch.relu(diff)))
    if coeffs["g_phi_norm"] > 0:
        x = torch.full_like(v_frame, 2 * xnorm)
        terms.append(coeffs["g_phi_norm"] * torch.linalg.vector_norm(edge_activation(x, a) - 2 * xnorm))
    if not terms:
        return model.W.new_zeros(())
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def training_loss(model: FlyVisGNN, v: torch.Tensor, I: torch.Tensor, y: torch.Tensor,
                  coeffs: dict[str, float], xnorm: float) -> torch.Tensor:
    """Data loss ||model(v, I) - y||_2 + ``regulariser(model, v[0], ...)``, fused.

    The edge MLP rows of the batch (live embedding) and of the monotonicity and
    normalisation regularisers (embedding detached: ``n_live`` = B) go through g_phi in one
    call; identical maths to evaluating them separately (tested), with fewer passes.
    """
    a = model.embedding
    v0 = v[0].detach()
    reg_v = [v0, 1.05 * v0] if coeffs["g_phi_diff"] > 0 else []
    if coeffs["g_phi_norm"] > 0:
        reg_v.append(torch.full_like(v0, 2 * xnorm))
    B = v.shape[0]
    rows = torch.cat([v, torch.stack(reg_v)]) if reg_v else v
    h_data, *h_reg = model.edge_activation(rows, a, n_live=B).split([B] + [1] * len(reg_v))  # one cat backward
    pred = model.update(v, a, model.aggregate(h_data), I)
    loss = torch.linalg.vector_norm(pred - y)
    if coeffs["g_phi_diff"] > 0:
        h_v, h_105v, *h_reg = h_reg
        loss = loss + coeffs["g_phi_diff"] * torch.linalg.vector_norm(torch.relu(h_v - h_105v))
    if coeffs["g_phi_norm"] > 0:
        loss = loss + coeffs["g_phi_norm"] * torch.linalg.vector_norm(h_reg[0] - 2 * xnorm)
    nodiff = dict(coeffs, g_phi_diff=0.0, g_phi_norm=0.0)
    return loss + regulariser(model, v0, nodiff, xnorm)


def build_model(cfg: RunConfig, dataset: Dataset, device: torch.device) -> FlyVisGNN:
    con = dataset.connectome
    model = FlyVisGNN(con.n_neurons, torch.from_numpy(con.edge_src), torch.from_numpy(con.edge_tgt),
                      cfg.model, generator=seeded_generator(cfg.training.seed, 1))
    return model.to(device)


def build_optimizer(model: FlyVisGNN, cfg: RunConfig, device: torch.device) -> torch.optim.Adam:
    """Adam with the four named groups; fused and graph-capturable on CUDA."""
    lrs = learning_rates(cfg.training, "joint")
    groups = [{"params": params, "lr": lrs[name], "name": name}
              for name, params in model.parameter_groups().items()]
    kwargs = {"fused": True, "capturable": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.Adam(groups, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, **kwargs)


def set_phase(optimizer: torch.optim.Optimizer, cfg: RunConfig, phase: str) -> None:
    lrs = learning_rates(cfg.training, phase)
    for group in optimizer.param_groups:
        group["lr"] = lrs[group["name"]]


class EagerStep:
    """One optimiser step: loss (data + regularisers), backward, Adam. Returns the detached loss."""

    def __init__(self, model: FlyVisGNN, optimizer: torch.optim.Optimizer, data: TrainingData,
                 cfg: RunConfig, xnorm: float):
        self.model, self.optimizer, self.data, self.cfg, self.xnorm = model, optimizer, data, cfg, xnorm
        self.coeffs: dict[str, float] = {}

    def configure(self, coeffs: dict[str, float], phase: str) -> None:
        """Set the epoch's coefficients and the phase's learning rates."""
        self.coeffs = coeffs
        set_phase(self.optimizer, self.cfg, phase)

    def eager(self, idx) -> torch.Tensor:
        v, I, y = self.data.rows(idx)
        loss = training_loss(self.model, v, I, y, self.coeffs, self.xnorm)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    __call__ = eager


class CudaGraphStep(EagerStep):
    """The same step captured in a CUDA graph (whole forward + backward + fused Adam).

    The first ``warmup`` steps run eagerly on a side stream (real iterations, as PyTorch
    requires before capture); the step is then captured and replayed with the batch indices
    copied into a static tensor. A new graph is captured whenever the phase or epoch changes
    (learning rates and coefficients are baked into the graph). Same maths as ``EagerStep``.
    """

    def __init__(self, *args, warmup: int = 3, **kwargs):
        super().__init__(*args, **kwargs)
        dev = self.model.W.device
        self.static_idx = torch.zeros(self.cfg.training.batch_size, dtype=torch.long, device=dev)
        self.static_loss = None
        self.graph = None
        self.warmup_left = warmup
        self.side = torch.cuda.Stream(device=dev)

    def configure(self, coeffs: dict[str, float], phase: str) -> None:
        super().configure(coeffs, phase)
        self._release()  # recapture with the new constants

    def _release(self) -> None:
        """Drop the current graph and everything allocated in its private memory pool."""
        if self.graph is not None:
            torch.cuda.current_stream().synchronize()
        self.graph, self.static_loss = None, None
        self.optimizer.zero_grad(set_to_none=True)

    def _capture(self) -> None:
        self._release()
        self.side.wait_stream(torch.cuda.current_stream())
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self.side):
            v, I, y = self.data.rows(self.static_idx)
            self.static_loss = training_loss(self.model, v, I, y, self.coeffs, self.xnorm)
            self.static_loss.backward()
            self.optimizer.step()
        torch.cuda.current_stream().wait_stream(self.side)
        self.graph = graph

    def __call__(self, idx) -> torch.Tensor:
        if self.warmup_left > 0:
            self.warmup_left -= 1
            self.side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.side):
                loss = self.eager(idx)
                self.optimizer.zero_grad(set_to_none=True)
            torch.cuda.current_stream().wait_stream(self.side)
            return loss
        self.static_idx.copy_(idx, non_blocking=True)
        if self.graph is None:
            self._capture()
        self.graph.replay()
        return self.static_loss.detach().clone()


def make_step(model, optimizer, data, cfg: RunConfig, xnorm: float) -> EagerStep:
    """CUDA-graph step on a GPU when ``training.cuda_graph`` is on, else the eager step."""
    if data.device.type == "cuda" and cfg.training.cuda_graph:
        return CudaGraphStep(model, optimizer, data, cfg, xnorm)
    return EagerStep(model, optimizer, data, cfg, xnorm)


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
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(LOG_COLUMNS)
        for r in rows:
            w.writerow([r["epoch"], r["iteration"], f"{r['connectivity_r2']:.6f}", f"{r['vrest_r2']:.6f}",
                        f"{r['tau_r2']:.6f}", r["phase"]])
    tmp.replace(path)


def _latest_checkpoint(run_dir: Path) -> Path | None:
    ckpts = sorted((run_dir / "checkpoints").glob("epoch_*.pt"), key=lambda p: int(p.stem.split("_")[1]))
    return ckpts[-1] if ckpts else None


def train(cfg: RunConfig, dataset: Dataset, run_dir: str | Path, device: str = "cpu",
          progress: bool = True, resume: bool = True,
          step_callback: Callable[[int, int, str, torch.optim.Optimizer], None] | None = None) -> TrainResult:
    """Train one run (standard or two-stage per ``cfg.training.alternate_training``).

    ``step_callback(epoch, iteration, phase, optimizer)``, if given, runs after every
    optimiser step (for tests and instrumentation; it must not synchronise the device).
    """
    from tqdm.auto import tqdm

    dev = torch.device(device)
    keep_freed_memory()  # no page faults per step on CPU (see allocator.py)
    run_dir = Path(run_dir)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(cfg.to_json())
    t = cfg.training
    n_iter = cfg.n_iterations(dataset.n_train)
    joint_iters = int(n_iter * t.alternate_joint_ratio) if t.alternate_training else n_iter
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
    ckpt = _latest_checkpoint(run_dir) if resume else None
    if ckpt is not None:
        state = torch.load(ckpt, map_location=dev, weights_only=False)
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
                bar.set_postfix(phase=phase, loss=f"{float(loss):.3g}", conn=f"{r2['connectivity_r2']:.3f}",
                                vrest=f"{r2['vrest_r2']:.3f}")
        if status == "failed":
            break
        losses.append(loss_buf.cpu().numpy())
        elapsed_now = elapsed + time.perf_counter() - t0
        if t.checkpoint_every_epoch:
            tmp = run_dir / "checkpoints" / f".epoch_{epoch}.pt.tmp"
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "sampler": sampler.get_state(), "config": json.loads(cfg.to_json()),
                        "epoch": epoch, "log_rows": rows, "coefficients": coeff_log,
                        "loss": np.concatenate(losses), "training_time_s": elapsed_now}, tmp)
            tmp.replace(run_dir / "checkpoints" / f"epoch_{epoch}.pt")
    bar.close()
    training_time = elapsed + time.perf_counter() - t0
    loss_all = np.concatenate(losses) if losses else np.zeros(0, np.float32)
    np.save(run_dir / "loss.npy", loss_all)
    (run_dir / "coefficients.json").write_text(json.dumps(coeff_log, indent=1))
    _write_log(run_dir / "metrics.log", rows)
    if status == "ok" and not all(math.isfinite(p.detach().float().sum().item()) for p in model.parameters()):
        status, reason = "failed", "non-finite parameters after training"
    release_freed_memory()
    return TrainResult(model, status, reason, rows, loss_all, coeff_log, training_time, data)


__all__ = ["train", "TrainResult", "regulariser", "build_model", "build_optimizer", "set_phase",
           "TrainingData", "GROUPS", "LOG_COLUMNS", "seeded_generator"]
