"""Where the package's data lives, and where relative output paths point.

The base configs and presets (``params/``) and the notebooks (``notebooks/``) are package
data: a wheel ships them as ``flyvis_study/params`` and ``flyvis_study/notebooks`` (mapped in
pyproject.toml), found with ``importlib.resources``; in a source checkout (an editable
install) they are the checkout's own ``params/`` and ``notebooks/``, the files a user edits.

A relative output path (a block's ``out_dir``, a summary's ``reports_dir``) is taken from the
project folder: the checkout's root when the package runs from a checkout (so a notebook
opened in JupyterLab from ``notebooks/`` still writes to ``reports/`` at the top, never to
``notebooks/reports/``), else the current working directory.

Packaged data is verified at load: ``package_data.json`` (beside this module, shipped in the
wheel) holds the size and sha256 of every shipped config, preset, notebook and built-in
flyvis network, keyed ``params/<name>``, ``notebooks/<name>``, ``world/flyvis_models/<name>``.
``config_file``, ``preset_file``, ``notebook_file`` and ``verified`` return a path only when its
bytes match; else ``PackageDataError``, one line saying to reinstall (or, in a checkout, to
restore the file or record an intended edit with ``python tools/package_manifest.py``, which a
test keeps current). A damaged shipped config never runs under its name: truncated to its
comment header it would parse as empty, i.e. as the defaults.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
from pathlib import Path

from flyvis_study.integrity import compare_entry, manifest

PACKAGE_ROOT = Path(__file__).resolve().parent
DATA_FOLDERS = ("params", "notebooks")
SUMMARY_NOTEBOOK = "study_summary.ipynb"  # the study summary across blocks (report.notebooks)
EXPLORATION_NOTEBOOK = "explore_search.ipynb"  # an adaptive exploration (exploration.search)
PACKAGE_MANIFEST = PACKAGE_ROOT / "package_data.json"
# the shipped files the manifest covers: (data folder or package subfolder, glob)
PACKAGED = (("params", "*.yaml"), ("params", "presets/*.yaml"), ("notebooks", "*.ipynb"),
            ("world/flyvis_models", "*.json"))


class PackageDataError(ValueError):
    """A shipped file whose bytes are not those the package was built with."""


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


def _folder(name: str) -> Path:
    return data_dir(name) if name in DATA_FOLDERS else PACKAGE_ROOT / name


def packaged_files() -> dict[str, Path]:
    """{manifest key: path} of every shipped file the manifest covers, as found now."""
    return {f"{name}/{p.relative_to(_folder(name)).as_posix()}": p
            for name, pattern in PACKAGED for p in sorted(_folder(name).glob(pattern))}


def write_package_manifest() -> Path:
    """Record the size and sha256 of every packaged file (``tools/package_manifest.py``)."""
    entries = {key: manifest(path.parent, [path.name])[path.name] for key, path in packaged_files().items()}
    PACKAGE_MANIFEST.write_text(json.dumps(entries, indent=1, sort_keys=True) + "\n")
    _manifest.cache_clear()
    return PACKAGE_MANIFEST


@functools.lru_cache(maxsize=1)
def _manifest() -> dict[str, dict]:
    try:
        return json.loads(PACKAGE_MANIFEST.read_text())
    except (OSError, ValueError) as err:
        raise PackageDataError(f"{PACKAGE_MANIFEST}: the package's data manifest is unreadable "
                               f"({type(err).__name__}); {_REMEDY}") from None


_REMEDY = "reinstall flyvis-study (pip install --force-reinstall flyvis-study)"


def verified(path: Path, key: str) -> Path:
    """``path`` (the shipped file ``key``) when its bytes match the package manifest, else
    ``PackageDataError`` naming the file, what differs and what to do."""
    entry = _manifest().get(key)
    reason = "not in the package manifest" if entry is None else compare_entry(path, entry)
    if reason is None:
        return path
    root = checkout_root()
    if root is not None:
        where = path.resolve().relative_to(root) if path.resolve().is_relative_to(root) else path
        remedy = (f"restore it (git checkout -- {where}), or record an intended edit with "
                  f"`python tools/package_manifest.py`")
    else:
        remedy = _REMEDY
    raise PackageDataError(f"{path}: damaged package data ({reason}); {remedy}")


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
    shipped = data_dir("params") / path.name
    if path.is_file():
        return verified(path, f"params/{path.name}") if path.resolve() == shipped.resolve() else path
    if path.parent == Path(".") or path.parent == Path("params"):
        if shipped.is_file():
            return verified(shipped, f"params/{path.name}")
    raise FileNotFoundError(f"config file {name}: not found; shipped base configs: {', '.join(shipped_configs())}")


def preset_file(name: str) -> Path:
    return verified(data_dir("params") / "presets" / f"{name}.yaml", f"params/presets/{name}.yaml")


def notebook_file(name: str) -> Path:
    return verified(data_dir("notebooks") / name, f"notebooks/{name}")
