"""Adam with the four named parameter groups, and the learning rates of a phase."""

from __future__ import annotations

import torch

from flyvis_study.config import RunConfig
from flyvis_study.model.gnn import FlyVisGNN
from flyvis_study.train.schedule import learning_rates


def build_optimizer(model: FlyVisGNN, cfg: RunConfig, device: torch.device) -> torch.optim.Adam:
    """Adam with the four named groups; fused and graph-capturable on CUDA."""
    lrs = learning_rates(cfg.training, "joint")
    groups = [{"params": params, "lr": lrs[name], "name": name}
              for name, params in model.parameter_groups().items()]
    kwargs = {"fused": True, "capturable": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.Adam(groups, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, **kwargs)


def set_phase(optimizer: torch.optim.Optimizer, cfg: RunConfig, phase: str, epoch: int = 0) -> None:
    """Set every group's learning rate to its value in ``phase`` of ``epoch`` (train.schedule)."""
    lrs = learning_rates(cfg.training, phase, epoch)
    for group in optimizer.param_groups:
        group["lr"] = lrs[group["name"]]
