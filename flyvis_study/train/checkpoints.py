"""End-of-epoch checkpoints: everything a killed run needs to resume at the next epoch.

``checkpoints/epoch_{k}.pt`` (torch.save, written atomically) holds the model and optimiser
state, the batch sampler's generator state, the config, the epoch index k, the metrics.log
rows and coefficients so far, the loss history and the training time, with a ``.sha256``
sidecar (``flyvis_study.integrity``). A run resumes from its highest-numbered checkpoint that
matches its checksum and loads; one that does not (truncated, changed bytes) is removed with
one ``IntegrityWarning`` naming it, and the next lower one is tried (none: start afresh).
Checkpoints written before checksums existed are used if they load.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from pathlib import Path

import torch

from flyvis_study.atomic import atomic_path
from flyvis_study.integrity import IntegrityWarning, sidecar, verify


def checkpoint_path(run_dir: Path, epoch: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"epoch_{epoch}.pt"


def save_checkpoint(run_dir: Path, epoch: int, state: dict) -> Path:
    path = checkpoint_path(run_dir, epoch)
    with atomic_path(path, checksum=True) as tmp:
        torch.save({**state, "epoch": epoch}, tmp)
    return path


def checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoint files, lowest epoch first."""
    return sorted((Path(run_dir) / "checkpoints").glob("epoch_*.pt"), key=lambda p: int(p.stem.split("_")[1]))


def load_checkpoint(path: Path, device: torch.device) -> dict:
    return torch.load(path, map_location=device, weights_only=False)


def latest_good_checkpoint(run_dir: Path, device: torch.device) -> dict | None:
    """The state of the highest checkpoint that verifies and loads (bad ones removed), or None."""
    for path in reversed(checkpoints(run_dir)):
        reason = verify(path)
        if reason in (None, "no checksum"):
            try:
                return load_checkpoint(path, device)
            except (RuntimeError, EOFError, OSError, ValueError, KeyError, pickle.UnpicklingError,
                    zipfile.BadZipFile) as err:
                reason = f"unreadable ({type(err).__name__}: {err})"
        warnings.warn(f"checkpoint {path}: {reason}; removed, resuming from an earlier one", IntegrityWarning,
                      stacklevel=2)
        path.unlink(missing_ok=True)
        sidecar(path).unlink(missing_ok=True)
    return None
