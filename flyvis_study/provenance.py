"""Provenance of a result: package version, git commit, torch version and device name.

Every run file, block file and report header carries ``provenance(device)``:

    package_version  flyvis_study's installed version (importlib.metadata)
    git_commit       HEAD of the checkout the package was imported from, "+dirty" when it has
                     uncommitted changes to tracked files outside ``reports/`` (results, not
                     what makes them: a block written into the committed examples does not
                     make the next block dirty); "" for an installed wheel
    torch_version    torch.__version__
    device           "cpu" or "cuda"
    device_name      the CPU model and torch's thread count, or the CUDA device name
"""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import subprocess
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent
RESULTS_FOLDER = "reports"  # tracked results (reports/examples): their changes do not make a commit dirty


@functools.lru_cache(maxsize=1)
def package_version() -> str:
    try:
        return importlib.metadata.version("flyvis_study")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """HEAD of the checkout holding this package (+dirty), or "" outside a checkout."""
    checkout = PACKAGE_ROOT.parent
    if not (checkout / ".git").exists():
        return ""
    try:
        head = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(checkout), "status", "--porcelain", "--untracked-files=no", "--",
                                ".", f":(exclude){RESULTS_FOLDER}"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return head + ("+dirty" if dirty else "")


def device_name(device: str = "cpu") -> str:
    """The CUDA device's name, or the CPU model with torch's intra-op thread count."""
    import torch  # noqa: PLC0415 - torch-free import path: provenance is read by the CLI's checks

    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    try:
        with open("/proc/cpuinfo") as fh:
            model = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"{model} ({torch.get_num_threads()} threads)"


def provenance(device: str = "cpu") -> dict[str, str]:
    """The provenance attributes of a result made on ``device`` (all str, netCDF-safe)."""
    import torch  # noqa: PLC0415 - torch-free import path: provenance is read by the CLI's checks

    return {"package_version": package_version(), "git_commit": git_commit(), "torch_version": str(torch.__version__),
            "device": str(device), "device_name": device_name(device)}
