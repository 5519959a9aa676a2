"""What a result file is, and reading one that may be damaged or of the other kind.

Every file says what it is: ``file_kind`` "run" (``study.record``) or "block"
(``study.statistics.block_dataset``); files from before the stamp: a block file is the one
that stores block ``parameters``. ``read_result_file(path, kind)`` reads one and refuses in one
line (``ResultFileError``) a file that is missing, not netCDF (truncated, random bytes, a
zeroed middle) or of the other kind, saying what to run.
"""

from __future__ import annotations

from pathlib import Path

import xarray as xr

from flyvis_study.study.record import NETCDF_ENGINE


class ResultFileError(ValueError):
    """A result file is unreadable or of the wrong kind; the message is one line saying what to do."""


def file_kind(ds: xr.Dataset) -> str:
    """"run" or "block": the file's stamp, else (files from before it) "block" when it stores
    block parameters."""
    return str(ds.attrs.get("file_kind") or ("block" if "parameters" in ds.attrs else "run"))


def read_result_file(path: str | Path, kind: str) -> xr.Dataset:
    """The ``kind`` ("run" or "block") file at ``path``, loaded; ``ResultFileError`` otherwise."""
    path = Path(path)
    redo = ("rebuild it with `flyvis-study block N --out <its folder>` (finished runs are reused, none retrained)"
            if kind == "block" else "remove it; the next block run recomputes the run")
    try:
        ds = xr.load_dataset(path, engine=NETCDF_ENGINE)
    except FileNotFoundError:
        raise ResultFileError(f"{path}: no such {kind} file") from None
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ResultFileError(f"{path}: not a readable {kind} file ({type(err).__name__}: {reason[:120]}); "
                              f"{redo}") from None
    found = file_kind(ds)
    if found != kind:
        raise ResultFileError(f"{path}: a {found} file, not a {kind} file" + (
            "; block files are blockN.nc, written by `flyvis-study block N`" if kind == "block" else ""))
    if kind == "block" and ("config" not in ds.dims or "connectivity_R2" not in ds):
        raise ResultFileError(f"{path}: a block file without runs (no config dimension or connectivity_R2); {redo}")
    return ds
