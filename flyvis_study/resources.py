"""Where the package's data lives, and where relative output paths point.

The base configs and presets (``params/``) and the notebooks (``notebooks/``) are package
data: a wheel ships them as ``flyvis_study/params`` and ``flyvis_study/notebooks`` (mapped in
pyproject.toml), found with ``importlib.resources``; in a source checkout (an editable
install) they are the checkout's own ``params/`` and ``notebooks/``, the files a user edits.

A relative output path (a block's ``out_dir``, a summary's ``reports_dir``) is taken from the
project folder: the checkout's root when the package runs from a checkout (so a notebook
opened in JupyterLab from ``notebooks/`` still writes to ``reports/`` at the top, never to
``notebooks/reports/``), else the current working directory.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent
DATA_FOLDERS = ("params", "notebooks")


def checkout_root() -> Path | None:
    """The source checkout holding this package, or None for an installed wheel."""
    root = PACKAGE_ROOT.parent
    if (root / "pyproject.toml").is_file() and all((root / name).is_dir() for name in DATA_FOLDERS):
        return root
    return None


def data_dir(name: str) -> Path:
    """The folder of package data ``name`` ('params' or 'notebooks')."""
    if name not in DATA_FOLDERS:
        raise ValueError(f"data folder {name!r}: allowed: {', '.join(DATA_FOLDERS)}")
    root = checkout_root()
    if root is not None:
        return root / name
    # files() of the regular package is a real folder in an installed wheel; the data folders
    # themselves are namespace packages, whose files() is not a single path
    installed = Path(str(importlib.resources.files("flyvis_study") / name))
    beside = PACKAGE_ROOT.parent / name  # a bare copy of the package and its data folders
    return installed if installed.is_dir() or not beside.is_dir() else beside


def project_path(path: str | Path) -> Path:
    """An absolute path: ``path`` itself if absolute, else under the project folder."""
    path = Path(path).expanduser()
    if path.is_absolute():
        return path
    return (checkout_root() or Path.cwd()) / path


def shipped_configs() -> list[str]:
    return sorted(p.name for p in data_dir("params").glob("*.yaml"))


def config_file(name: str | Path) -> Path:
    """A run config: an existing file as given, else a base config shipped in params/ by name."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    shipped = data_dir("params") / path.name
    if path.parent == Path(".") or path.parent == Path("params"):
        if shipped.is_file():
            return shipped
    raise FileNotFoundError(f"config file {name}: not found; shipped base configs: {', '.join(shipped_configs())}")


def preset_file(name: str) -> Path:
    return data_dir("params") / "presets" / f"{name}.yaml"


def notebook_file(name: str) -> Path:
    return data_dir("notebooks") / name
