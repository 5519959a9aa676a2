"""Replicate stacking: R runs of one graph trained together in one process.

``train_stack(cfgs, datasets, run_dirs)`` trains R runs that share the graph (same extent,
model shape and batch size; their ground truth, simulation seed, i.e. dataset, training seed
and every training hyperparameter may differ) as one stack: per step, every active replica
draws its own batch from its own dataset with its own sampler (a ``Replica`` per run: the
``train.state.RunState`` a single run uses, advanced one step at a time), the stacked loss (``stacking.loss``, one
value per replica) is differentiated once, and one multi-tensor Adam step
(``stacking.adam``) updates every replica with its own learning rates and moments. Each
replica follows its own phase schedule and per-epoch coefficients, writes its own
metrics.log rows, checkpoints and outputs as it goes, and drops out of the stack when it
finishes or diverges; the others go on. A replica's numbers are those of the same run
trained alone (same seeds), to float rounding (tested in float64).

Cost: what R replicas share is the per-operation overhead of a step; its arithmetic and
memory traffic grow with R. On a GPU, where a single run leaves the device half idle, the
batched products are what stacking is for; on this project's CPUs the small-preset step is
bound by its arithmetic, and a stacked step costs each run about as much as its own step.
Measured by ``flyvis-study bench --replicates R`` (README, "Replicate stacking").
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from flyvis_study.config import RunConfig
from flyvis_study.stacking.adam import adam_step
from flyvis_study.stacking.loss import COEFFICIENTS, coefficient_tensors, stacked_training_loss
from flyvis_study.stacking.model import StackedGNN
from flyvis_study.train.optimizer import set_phase
from flyvis_study.train.precision import cuda_matmul_precision
from flyvis_study.train.schedule import phase_of
from flyvis_study.train.state import RunState, TrainResult
from flyvis_study.world.dataset import Dataset


def stackable(cfg: RunConfig) -> bool:
    """Whether a run can train in a stack: the stacked loss has no silent-input anchor."""
    return cfg.training.coeff_g_phi_silent == 0


def stack_key(cfg: RunConfig) -> tuple:
    """Runs with equal keys can share a stack: same graph (extent), model shape, batch size and
    CUDA matmul precision."""
    m = cfg.model
    return (cfg.simulation.extent, m.hidden_dim, m.n_layers, m.embedding_dim, m.g_phi_positive,
            cfg.training.batch_size, cfg.training.matmul_precision)


class Replica:
    """One run of a stack: its ``RunState``, advanced one optimiser step at a time by the stack.

    Per step the stack reads ``batch()`` (the frame indices of the current iteration;
    ``phase_changed`` says whether ``coeffs`` / ``phase`` must be applied first), computes
    the step, and hands the replica's loss to ``record``, which keeps it, writes metrics.log
    rows at the logged iterations (stopping a diverged run), and at the end of an epoch
    writes the checkpoint and draws the next epoch's batches, as ``train.loop.train`` does
    for a run alone. ``done`` is set when the last epoch ends or the run diverged.
    """

    def __init__(self, cfg: RunConfig, dataset: Dataset, run_dir: str | Path, device: str = "cpu",
                 resume: bool = True, dtype: torch.dtype = torch.float32,
                 step_callback: Callable[[int, int, str, torch.optim.Optimizer], None] | None = None):
        self.state = s = RunState.open(cfg, dataset, run_dir, device, dtype, resume)
        self.cfg, self.dataset, self.data, self.model, self.optimizer = cfg, dataset, s.data, s.model, s.optimizer
        self.xnorm, self.step_callback = s.xnorm, step_callback
        self.epoch, self.iteration, self.phase, self.phase_changed = s.epoch, 0, None, False
        self.done = self.epoch >= cfg.training.n_epochs
        if not self.done:
            self._begin_epoch()

    @property
    def steps_left(self) -> int:
        if self.done:
            return 0
        return (self.cfg.training.n_epochs - self.epoch) * self.state.n_iter - self.iteration

    def _begin_epoch(self) -> None:
        self.coeffs, self.batches, self.losses, self.iteration = self.state.begin_epoch(self.epoch)
        self.phase = None

    def batch(self):
        """Frame indices (batch_size,) of the current iteration; sets ``phase`` and ``phase_changed``."""
        new_phase = phase_of(self.iteration, self.state.joint_iters)
        self.phase_changed = new_phase != self.phase
        self.phase = new_phase
        return self.batches[self.iteration]

    def record(self, loss: torch.Tensor) -> None:
        """Keep the current iteration's loss (0-d, detached) and move on (see the class docstring)."""
        it = self.iteration
        self.losses[it] = loss
        if self.step_callback is not None:
            self.step_callback(self.epoch, it, self.phase, self.optimizer)
        if it in self.state.log_at and self.state.log_row(self.epoch, it, self.phase, self.losses) is None:
            self.done = True
            return
        self.iteration += 1
        if self.iteration == self.state.n_iter:
            self.state.end_epoch(self.epoch, self.losses)
            self.epoch += 1
            self.done = self.epoch >= self.cfg.training.n_epochs
            if not self.done:
                self._begin_epoch()

    def finish(self) -> TrainResult:
        return self.state.finish()


class StackedStep:
    """One optimiser step of the active replicas (eager). ``configure`` whenever a replica's
    phase changed or the set of active replicas did; ``__call__`` returns the (R,) losses."""

    def __init__(self, runs: list[Replica]):
        self.runs: list[Replica] = []
        self.configure(runs)

    def configure(self, runs: list[Replica]) -> None:
        """Apply each run's phase learning rates and epoch coefficients; (re)build the stack."""
        self.runs = list(runs)
        self.gnn = StackedGNN([r.model for r in runs])
        for r in runs:
            set_phase(r.optimizer, r.cfg, r.phase, r.epoch)
        like = runs[0].model.W
        self.c = coefficient_tensors([r.coeffs for r in runs], like)
        self.active = {k: any(r.coeffs[k] > 0 for r in runs) for k in COEFFICIENTS}
        self.xnorm = torch.tensor([r.xnorm for r in runs], dtype=like.dtype, device=like.device)
        self.optimizers = [r.optimizer for r in runs]
        self.by_data = _share_data(runs)

    def batch(self, idx: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(v, I, y), each (R, B, N): replica r's rows at its indices ``idx[r]`` (one read per dataset)."""
        parts: dict[int, tuple] = {}
        for data, members in self.by_data:
            B = len(idx[members[0]])
            joined = (torch.cat([torch.as_tensor(idx[i]) for i in members]) if data.resident
                      else np.concatenate([np.asarray(idx[i]) for i in members]))
            v, I, y = data.rows(joined)
            for k, i in enumerate(members):
                parts[i] = (v[k * B:(k + 1) * B], I[k * B:(k + 1) * B], y[k * B:(k + 1) * B])
        return tuple(torch.stack([parts[i][j] for i in range(len(idx))]) for j in range(3))

    def loss(self, v, I, y) -> torch.Tensor:
        return stacked_training_loss(self.gnn, v, I, y, self.c, self.active, self.xnorm)

    def __call__(self, idx: list) -> torch.Tensor:
        with cuda_matmul_precision(self.runs[0].cfg.training.matmul_precision):
            v, I, y = self.batch(idx)
            loss = self.loss(v, I, y)
            for opt in self.optimizers:
                opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            adam_step(self.optimizers)
        return loss.detach()


class StackedCudaGraphStep(StackedStep):
    """The stacked step captured in a CUDA graph (forward, backward, multi-tensor Adam), as
    ``train.steps.CudaGraphStep`` does for one run: ``warmup`` eager steps on a side stream,
    then capture with the replicas' batch indices in a static (R, B) tensor; recaptured at
    every ``configure`` (a phase, epoch or membership change: the constants are in the graph)."""

    def __init__(self, runs: list[Replica], warmup: int = 3):
        dev = runs[0].model.W.device
        self.side = torch.cuda.Stream(device=dev)
        self.graph, self.static_loss, self.warmup = None, None, warmup
        super().__init__(runs)

    def configure(self, runs: list[Replica]) -> None:
        if self.graph is not None:
            torch.cuda.current_stream().synchronize()
        self.graph, self.static_loss = None, None
        super().configure(runs)
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        B = runs[0].cfg.training.batch_size
        self.static_idx = torch.zeros(len(runs), B, dtype=torch.long, device=self.runs[0].model.W.device)
        self.warmup_left = self.warmup

    def _capture(self) -> None:
        self.side.wait_stream(torch.cuda.current_stream())
        graph = torch.cuda.CUDAGraph()
        with (torch.cuda.graph(graph, stream=self.side),
              cuda_matmul_precision(self.runs[0].cfg.training.matmul_precision)):
            v, I, y = self.batch(list(self.static_idx.unbind()))
            self.static_loss = self.loss(v, I, y)
            self.static_loss.sum().backward()
            adam_step(self.optimizers)
        torch.cuda.current_stream().wait_stream(self.side)
        self.graph = graph

    def __call__(self, idx: list) -> torch.Tensor:
        if self.warmup_left > 0:
            self.warmup_left -= 1
            self.side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.side):
                loss = StackedStep.__call__(self, idx)
                for opt in self.optimizers:
                    opt.zero_grad(set_to_none=True)
            torch.cuda.current_stream().wait_stream(self.side)
            return loss
        self.static_idx.copy_(torch.stack([torch.as_tensor(i, device=self.static_idx.device) for i in idx]),
                              non_blocking=True)
        if self.graph is None:
            self._capture()
        self.graph.replay()
        return self.static_loss.detach().clone()


def _share_data(runs: list[Replica]) -> list[tuple]:
    """[(TrainingData, replica positions)] with one entry per distinct dataset of the stack."""
    groups: dict[str, tuple] = {}
    for i, r in enumerate(runs):
        key = str(r.dataset.path)
        if key not in groups:
            groups[key] = (r.data, [])
        groups[key][1].append(i)
    return list(groups.values())


def make_stacked_step(runs: list[Replica]) -> StackedStep:
    """CUDA-graph stacked step on a GPU when every run has ``training.cuda_graph`` on, else eager."""
    if runs[0].model.W.device.type == "cuda" and all(r.cfg.training.cuda_graph for r in runs):
        return StackedCudaGraphStep(runs)
    return StackedStep(runs)


def train_stack(cfgs: list[RunConfig], datasets: list[Dataset], run_dirs: list[str | Path], device: str = "cpu",
                progress: bool = True, resume: bool = True, dtype: torch.dtype = torch.float32,
                step_callback: Callable[[int, int, int, str, torch.optim.Optimizer], None] | None = None,
                on_finish: Callable[[int, TrainResult], None] | None = None) -> list[TrainResult]:
    """Train the runs ``cfgs[r]`` on ``datasets[r]`` into ``run_dirs[r]`` as one stack (module docstring).

    Runs must share ``stack_key``. A run whose last checkpoint is its last epoch is finished
    at once; the others resume from their checkpoints. ``step_callback(replica, epoch,
    iteration, phase, optimizer)`` runs after each replica's step; ``on_finish(replica,
    result)`` as each replica finishes (its outputs are written then). Returns the results
    in run order.
    """
    keys = {stack_key(c) for c in cfgs}
    if len(keys) != 1:
        raise ValueError("runs of one stack must share extent, model shape, batch size and matmul precision "
                         "(stack_key)")
    if not (len(cfgs) == len(datasets) == len(run_dirs)):
        raise ValueError("train_stack: cfgs, datasets and run_dirs must have the same length")
    runs = []
    for r, (cfg, ds, run_dir) in enumerate(zip(cfgs, datasets, run_dirs)):
        cb = None if step_callback is None else (lambda *a, r=r: step_callback(r, *a))
        runs.append(Replica(cfg, ds, run_dir, device, resume, dtype, cb))
    results: dict[int, TrainResult] = {}

    def finish(i: int) -> None:
        results[i] = runs[i].finish()
        if on_finish is not None:
            on_finish(i, results[i])

    bar = tqdm(total=sum(r.steps_left for r in runs), disable=not progress, desc=f"train x{len(runs)}",
               unit="it", dynamic_ncols=True, leave=False)
    for i, r in enumerate(runs):
        if r.done:
            finish(i)
    active = [i for i, r in enumerate(runs) if not r.done]
    step = None
    while active:
        idx = [runs[i].batch() for i in active]
        members = [runs[i] for i in active]
        if step is None:
            step = make_stacked_step(members)
        elif members != step.runs or any(r.phase_changed for r in members):
            step.configure(members)
        losses = step(idx)
        for i, loss in zip(active, losses.unbind()):
            runs[i].record(loss)
            if runs[i].done:
                finish(i)
        bar.update(len(active))
        active = [i for i in active if not runs[i].done]
    bar.close()
    return [results[i] for i in range(len(runs))]
