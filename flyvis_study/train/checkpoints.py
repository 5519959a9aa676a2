"""Checkpoints: everything a killed or cut run needs to resume, bitwise as if uninterrupted.

End of epoch k: ``checkpoints/epoch_{k}.pt``. Within an epoch (``train.loop.train``'s
``checkpoint_every_s`` and ``stop_at``): ``checkpoints/partial.pt``, one file overwritten in
place, with the iteration reached, the epoch's losses so far and the batch sampler's state
at the start of the epoch (its batches are drawn again on resuming); it is removed when the
epoch ends.

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
import zipfile
from pathlib import Path

import torch

from flyvis_study.atomic import atomic_path
from flyvis_study.integrity import repaired, sidecar, verify

PARTIAL = "partial.pt"


def checkpoint_path(run_dir: Path, epoch: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"epoch_{epoch}.pt"


def partial_path(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints" / PARTIAL


def save_partial(run_dir: Path, state: dict) -> Path:
    path = partial_path(run_dir)
    with atomic_path(path, checksum=True) as tmp:
        torch.save(state, tmp)
    return path


def remove_partial(run_dir: Path) -> None:
    path = partial_path(run_dir)
    path.unlink(missing_ok=True)
    sidecar(path).unlink(missing_ok=True)


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
        state = _good(path, device)
        if state is not None:
            return state
    return None


def good_partial(run_dir: Path, device: torch.device) -> dict | None:
    """The within-epoch checkpoint's state if there is one that verifies and loads (a bad one removed)."""
    path = partial_path(run_dir)
    return _good(path, device) if path.is_file() else None


def _good(path: Path, device: torch.device) -> dict | None:
    reason = verify(path)
    if reason in (None, "no checksum"):
        try:
            return load_checkpoint(path, device)
        except (RuntimeError, EOFError, OSError, ValueError, KeyError, pickle.UnpicklingError,
                zipfile.BadZipFile) as err:
            reason = f"unreadable ({type(err).__name__}: {err})"
    repaired(f"checkpoint {path}: {reason}; removed, resuming from an earlier one", stacklevel=3)
    path.unlink(missing_ok=True)
    sidecar(path).unlink(missing_ok=True)
    return None
