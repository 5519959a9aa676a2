"""Kernel profile of the training step on a GPU (device machine only; not part of the tests).

Usage: python tools/gpu_profile.py [preset] [out_dir]. First the CUDA-graph step with each
MLP backward (``training.mlp_backward``: "chunked", "autograd"), interleaved blocks of 300
iterations, ms per iteration (block means); then, with the default backward, for the eager
and the CUDA-graph step (every regulariser on, as in the benchmark): ms per iteration,
kernels per iteration, GPU busy time per iteration (sum of kernel durations), the 25 most
expensive kernels, and Chrome traces in out_dir.
"""

import sys

import torch
from torch.profiler import ProfilerActivity, profile

from flyvis_study.bench import block_ms_per_iter
from flyvis_study.config import load_run_config
from flyvis_study.train.loop import build_model
from flyvis_study.train.optimizer import build_optimizer
from flyvis_study.train.schedule import coefficients
from flyvis_study.train.steps import CudaGraphStep, EagerStep
from flyvis_study.world.dataset import get_dataset
from flyvis_study.world.training_data import TrainingData

preset = sys.argv[1] if len(sys.argv) > 1 else "full"
out_dir = sys.argv[2] if len(sys.argv) > 2 else "."
dev = torch.device("cuda")
cfg = load_run_config("two_stage.yaml", preset=preset)
dataset = get_dataset(cfg.simulation, device="cuda", progress=False)
data = TrainingData(dataset, dev)
model = build_model(cfg, dataset, dev)
optimizer = build_optimizer(model, cfg, dev)
gen = torch.Generator().manual_seed(0)
draws = torch.randint(0, data.frames.shape[0], (400, cfg.training.batch_size), generator=gen)
idx = data.frames[draws.to(dev)]
n_prof = 20
default = cfg.training.mlp_backward
times = {"chunked": [], "autograd": []}
for _ in range(3):
    for variant in times:
        model.use_mlp_backward(variant)
        step = CudaGraphStep(model, optimizer, data, cfg, data.stats.xnorm)
        step.configure(coefficients(cfg.training, 1), "joint")
        times[variant].append(block_ms_per_iter(step, idx, 10, 300, dev))
        step._release()
        del step
print("== graph step by MLP backward (ms/iter, 3 blocks each):",
      {k: [round(t, 4) for t in v] for k, v in times.items()}, flush=True)
model.use_mlp_backward(default)
for name, cls in (("eager", EagerStep), ("graph", CudaGraphStep)):
    step = cls(model, optimizer, data, cfg, data.stats.xnorm)
    step.configure(coefficients(cfg.training, 1), "joint")
    ms = block_ms_per_iter(step, idx, 10, 300, dev)
    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        for k in range(310, 310 + n_prof):
            step(idx[k])
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    busy = sum(getattr(e, "device_time", None) or getattr(e, "cuda_time", 0.0) for e in kernels)
    print(f"== {name}: {ms:.3f} ms/iter; {len(kernels) / n_prof:.0f} GPU activities/iter; "
          f"GPU busy {busy / n_prof / 1e3:.3f} ms/iter", flush=True)
    device_time = "self_device_time_total"
    sort = device_time if hasattr(prof.key_averages()[0], device_time) else "self_cuda_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=25, max_name_column_width=70), flush=True)
    prof.export_chrome_trace(f"{out_dir}/trace_{name}.json")
