"""Benchmark: simulation speed, training step (fast vs naive, same process), evaluation, memory.

Timed on the preset's real dataset (generated or taken from the cache first; its
generation time is not part of any number below):
- sim_frames_per_s: Euler steps of the ground-truth ODE with noise, on the device;
- fast_ms_per_iter: the per-neuron step (g_phi once per neuron, gather/scatter, fused loss);
- graph_ms_per_iter (CUDA only): the same step captured in a CUDA graph;
- graph_tf32_ms_per_iter (CUDA only): that graph with ``training.matmul_precision = tf32``;
- naive_ms_per_iter: the reference-style step (g_phi on every edge row), same data and model;
  on CPU the two are timed in alternating blocks (medians per iteration), on CUDA in blocks;
- with ``replicates`` R: single_ms_per_iter (one run's step) and stacked_ms_per_iter (one step of
  R stacked replicas, ``stacking.train``; replicas with training seeds 0 .. R-1 on the same
  dataset), timed in alternating blocks of 10 steps (medians), stacked_ms_per_run_iter =
  stacked / R and
  stacked_vs_single = stacked_ms_per_run_iter / single_ms_per_iter;
- eval_s: every final metric (recovery, clustering, one-step test, rollout);
- peak_rss_gb (and peak_gpu_mem_gb on CUDA).
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass

import numpy as np
import torch

from flyvis_study.config import load_run_config
from flyvis_study.evaluation.evaluate import evaluate
from flyvis_study.fast.allocator import keep_freed_memory
from flyvis_study.model.naive import naive_edge_activation, naive_forward
from flyvis_study.provenance import device_name, provenance
from flyvis_study.stacking.train import make_stacked_step
from flyvis_study.train.loop import build_model
from flyvis_study.train.loss import regulariser
from flyvis_study.train.optimizer import build_optimizer
from flyvis_study.train.schedule import coefficients
from flyvis_study.train.steps import CudaGraphStep, EagerStep, make_step
from flyvis_study.world.dataset import get_dataset
from flyvis_study.world.simulator import Simulator
from flyvis_study.world.training_data import TrainingData


class NaiveStep(EagerStep):
    """The reference-style step: g_phi evaluated on every edge row, every MLP call on
    concatenated inputs (same loss, same optimiser)."""

    def eager(self, idx) -> torch.Tensor:
        v, I, y = self.data.rows(idx)
        plain = lambda v, a: naive_edge_activation(self.model, v, a)  # noqa: E731
        loss = torch.linalg.vector_norm(naive_forward(self.model, v, I) - y) + regulariser(
            self.model, v[0], self.coeffs, self.xnorm, edge_activation=plain)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    __call__ = eager


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def block_ms_per_iter(step, batches, n_warmup: int, n_timed: int, device: torch.device) -> float:
    """ms per iteration over ``n_timed`` steps after ``n_warmup`` (the CUDA steps).

    The mean over the whole block with one synchronisation at each end (a per-iteration sync
    would serialise the launches being measured). CPU steps: ``_interleaved_cpu_ms``.
    """
    for k in range(n_warmup):
        step(batches[k % len(batches)])
    _sync(device)
    t0 = time.perf_counter()
    for k in range(n_timed):
        step(batches[(n_warmup + k) % len(batches)])
    _sync(device)
    return 1e3 * (time.perf_counter() - t0) / n_timed


def _interleaved_cpu_ms(fast, naive, batches, fast_iters: int, naive_iters: int) -> tuple[float, float]:
    """CPU: median ms per iteration of the fast and of the naive step, timed in alternating
    blocks (``naive_iters`` rounds of ceil(fast_iters / naive_iters) fast steps and one naive
    step, after 3 fast and 1 naive warm-up steps), so that both see the same machine state:
    this shared VM runs up to ~30 % slower for stretches, and a ratio of two blocks timed
    minutes apart can mix its phases."""
    per_round = -(-fast_iters // naive_iters)
    for k in range(3):
        fast(batches[k % len(batches)])
    naive(batches[3 % len(batches)])
    fast_s, naive_s = [], []
    k = 4
    for _ in range(naive_iters):
        for _ in range(per_round):
            t = time.perf_counter()
            fast(batches[k % len(batches)])
            fast_s.append(time.perf_counter() - t)
            k += 1
        t = time.perf_counter()
        naive(batches[k % len(batches)])
        naive_s.append(time.perf_counter() - t)
        k += 1
    return 1e3 * float(np.median(fast_s)), 1e3 * float(np.median(naive_s))


@dataclass
class BenchReplica:
    """What ``stacking.train.StackedStep`` reads of a replica (``stacking.train.Replica`` has the same)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    cfg: object
    data: TrainingData
    dataset: object
    xnorm: float
    coeffs: dict
    phase: str = "joint"
    epoch: int = 0


def _alternating_blocks_ms(single, stacked, batches, stack_batches, n_iters: int,
                           block: int = 10) -> tuple[float, float]:
    """CPU: median ms per step of ``single`` and of ``stacked``, timed in alternating blocks of
    ``block`` steps each (ceil(n_iters / block) rounds), the first step of every block untimed:
    each step follows one of its own kind, as in training (a step right after the other kind
    finds the caches holding the other's tensors and runs slower: README, "Replicate stacking"), and both
    see the same stretches of this VM's drifting speed."""
    one_s, st_s = [], []
    k = 0
    for _ in range(-(-n_iters // block)):
        for step, items, times in ((single, batches, one_s), (stacked, stack_batches, st_s)):
            for j in range(block + 1):
                t = time.perf_counter()
                step(items[k % len(items)])
                if j:
                    times.append(time.perf_counter() - t)
                k += 1
    return 1e3 * float(np.median(one_s)), 1e3 * float(np.median(st_s))


def stacked_vs_single_ms(cfg, dataset, data: TrainingData, replicates: int, coeffs: dict, batches,
                         n_iters: int, device: torch.device) -> dict:
    """Median ms per step of one run alone and of ``replicates`` stacked replicas, timed in
    alternating blocks on CPU (``_alternating_blocks_ms``); on CUDA both are the CUDA-graph steps
    when ``training.cuda_graph`` is on, timed in blocks."""
    replicas = []
    for r in range(replicates):
        c = cfg.model_copy(update={"training": cfg.training.model_copy(update={"seed": r})})
        model = build_model(c, dataset, device)
        replicas.append(BenchReplica(model, build_optimizer(model, c, device), c, data, dataset,
                                     data.stats.xnorm, coeffs))
    model = build_model(cfg, dataset, device)
    single = make_step(model, build_optimizer(model, cfg, device), data, cfg, data.stats.xnorm)
    single.configure(coeffs, "joint")
    stacked = make_stacked_step(replicas)
    stack_batches = [[batches[(k + r) % len(batches)] for r in range(replicates)] for k in range(len(batches))]
    if device.type == "cuda":
        one = block_ms_per_iter(single, batches, 5, n_iters * 10, device)
        st = block_ms_per_iter(stacked, stack_batches, 5, n_iters * 10, device)
    else:
        one, st = _alternating_blocks_ms(single, stacked, batches, stack_batches, n_iters)
    return {"replicates": replicates, "single_ms_per_iter": one, "stacked_ms_per_iter": st,
            "stacked_ms_per_run_iter": st / replicates, "stacked_vs_single": st / replicates / one}


def run_benchmark(preset: str = "full", device: str = "cpu", fast_iters: int = 30, naive_iters: int = 3,
                  sim_frames: int = 2000, evaluate_metrics: bool = True, cache: str | None = None,
                  progress: bool = False, replicates: int | None = None) -> dict:
    dev = torch.device(device)
    keep_freed_memory()  # as every training entry point does (fast/allocator.py); both steps see it
    cfg = load_run_config("two_stage.yaml", preset=preset)
    t0 = time.perf_counter()
    dataset = get_dataset(cfg.simulation, root=cache, device=device, progress=progress)
    data_s = time.perf_counter() - t0
    con = dataset.connectome
    out: dict = {"device": device_name(device), "device_type": dev.type, "preset": preset,
                 "n_neurons": con.n_neurons, "n_edges": con.n_edges, "batch_size": cfg.training.batch_size,
                 "torch": torch.__version__, "dataset_ready_s": data_s, "provenance": provenance(device)}

    # simulation speed
    sim = Simulator(con, dataset.ground_truth, dt=cfg.simulation.dt, noise_level=cfg.simulation.noise_model_level,
                    device=dev)
    hexals = np.asarray(dataset.array("train_stimulus")[:sim_frames])
    gen = torch.Generator(device=dev).manual_seed(0)
    v0 = sim.initial_state()
    for _ in sim.run(hexals[:100], v0, gen):
        pass
    _sync(dev)
    t0 = time.perf_counter()
    for _ in sim.run(hexals, v0, gen):
        pass
    _sync(dev)
    out["sim_frames_per_s"] = len(hexals) / (time.perf_counter() - t0)

    # training steps on the same data and model
    data = TrainingData(dataset, dev)
    model = build_model(cfg, dataset, dev)
    optimizer = build_optimizer(model, cfg, dev)
    coeffs = coefficients(cfg.training, 1)  # every regulariser active
    gen = torch.Generator().manual_seed(0)
    draws = torch.randint(0, data.frames.shape[0], (max(fast_iters, naive_iters) + 10, cfg.training.batch_size),
                          generator=gen)
    batches = data.frames[draws.to(data.frames.device)]
    if not data.resident:
        batches = batches.numpy()
    xnorm = data.stats.xnorm
    fast = EagerStep(model, optimizer, data, cfg, xnorm)
    fast.configure(coeffs, "joint")
    naive = NaiveStep(model, optimizer, data, cfg, xnorm)
    naive.configure(coeffs, "joint")
    if dev.type == "cpu":
        out["fast_ms_per_iter"], out["naive_ms_per_iter"] = _interleaved_cpu_ms(fast, naive, batches, fast_iters,
                                                                                naive_iters)
    else:
        out["fast_ms_per_iter"] = block_ms_per_iter(fast, batches, 3, fast_iters, dev)
        graphed = CudaGraphStep(model, optimizer, data, cfg, xnorm)
        graphed.configure(coeffs, "joint")
        out["graph_ms_per_iter"] = block_ms_per_iter(graphed, batches, 5, fast_iters * 10, dev)
        tf32 = cfg.model_copy(update={"training": cfg.training.model_copy(update={"matmul_precision": "tf32"})})
        graphed_tf32 = CudaGraphStep(model, optimizer, data, tf32, xnorm)
        graphed_tf32.configure(coeffs, "joint")
        out["graph_tf32_ms_per_iter"] = block_ms_per_iter(graphed_tf32, batches, 5, fast_iters * 10, dev)
        out["naive_ms_per_iter"] = block_ms_per_iter(naive, batches, 1, naive_iters, dev)
    out["speedup_fast_vs_naive"] = out["naive_ms_per_iter"] / out["fast_ms_per_iter"]
    if "graph_ms_per_iter" in out:
        out["speedup_graph_vs_naive"] = out["naive_ms_per_iter"] / out["graph_ms_per_iter"]
    if replicates:
        out.update(stacked_vs_single_ms(cfg, dataset, data, replicates, coeffs, batches, fast_iters, dev))
    best = out.get("graph_ms_per_iter", out["fast_ms_per_iter"])
    n_iter = cfg.n_iterations(dataset.n_train)
    out["projected_two_stage_train_min"] = best * n_iter * cfg.training.n_epochs / 60e3

    if evaluate_metrics:
        t0 = time.perf_counter()
        evaluate(model, dataset, cfg, data)
        _sync(dev)
        out["eval_s"] = time.perf_counter() - t0
    out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    if dev.type == "cuda":
        out["peak_gpu_mem_gb"] = torch.cuda.max_memory_allocated(dev) / 1024**3
    return out


def format_benchmark(r: dict) -> str:
    lines = [f"device               {r['device']}",
             f"preset               {r['preset']} ({r['n_neurons']:,} neurons, {r['n_edges']:,} edges, "
             f"batch {r['batch_size']})",
             f"simulation           {r['sim_frames_per_s']:,.0f} frames/s",
             f"train step, fast     {r['fast_ms_per_iter']:.2f} ms/iter"]
    if "graph_ms_per_iter" in r:
        lines.append(f"train step, graph    {r['graph_ms_per_iter']:.3f} ms/iter (CUDA graph)")
    if "graph_tf32_ms_per_iter" in r:
        lines.append(f"train step, TF32     {r['graph_tf32_ms_per_iter']:.3f} ms/iter (CUDA graph, "
                     f"training.matmul_precision=tf32, same process)")
    lines += [f"train step, naive    {r['naive_ms_per_iter']:.2f} ms/iter (per-edge g_phi, same process)",
              f"speed-up             {r['speedup_fast_vs_naive']:.1f}x fast vs naive"
              + (f", {r['speedup_graph_vs_naive']:.1f}x graph vs naive" if "speedup_graph_vs_naive" in r else ""),
              f"2-epoch two-stage    {r['projected_two_stage_train_min']:.1f} min projected (best step)"]
    if "replicates" in r:
        R = r["replicates"]
        lines += [f"{'stack of ' + str(R):21s}{r['stacked_ms_per_iter']:.2f} ms/iter for {R} runs = "
                  f"{r['stacked_ms_per_run_iter']:.2f} ms per run-iteration (stacking.train)",
                  f"one run alone        {r['single_ms_per_iter']:.2f} ms/iter (same process, alternating)",
                  f"stacked / single     {r['stacked_vs_single']:.2f}x per run"]
    if "eval_s" in r:
        lines.append(f"evaluation           {r['eval_s']:.1f} s (all final metrics)")
    lines.append(f"peak RSS             {r['peak_rss_gb']:.2f} GB"
                 + (f"; peak GPU memory {r['peak_gpu_mem_gb']:.2f} GB" if "peak_gpu_mem_gb" in r else ""))
    return "\n".join(lines)
