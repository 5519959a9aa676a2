"""End-of-epoch checkpoints: everything a killed run needs to resume at the next epoch.

``checkpoints/epoch_{k}.pt`` (torch.save, written atomically) holds the model and optimiser
state, the batch sampler's generator state, the config, the epoch index k, the metrics.log
rows and coefficients so far, the loss history and the training time. A run resumes from its
highest-numbered checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import torch

from flyvis_study.atomic import atomic_path


def checkpoint_path(run_dir: Path, epoch: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"epoch_{epoch}.pt"


def save_checkpoint(run_dir: Path, epoch: int, state: dict) -> Path:
    path = checkpoint_path(run_dir, epoch)
    with atomic_path(path) as tmp:
        torch.save({**state, "epoch": epoch}, tmp)
    return path


def latest_checkpoint(run_dir: Path) -> Path | None:
    ckpts = sorted((Path(run_dir) / "checkpoints").glob("epoch_*.pt"), key=lambda p: int(p.stem.split("_")[1]))
    return ckpts[-1] if ckpts else None


def load_checkpoint(path: Path, device: torch.device) -> dict:
    return torch.load(path, map_location=device, weights_only=False)
