"""Locate, verify and cache the flyvis connectome file ``fib25-fib19_v2.2.json``.

The file ships inside the ``flyvis`` wheel. We never import flyvis (it replaces torch and
pulls ~60 packages). Resolution order:

1. ``$FLYVIS_CONNECTOME_FILE`` (an explicit path);
2. the project cache (``$FLYVIS_STUDY_CACHE`` or ``~/.cache/flyvis_study``);
3. an installed ``flyvis`` distribution, found through ``importlib.metadata`` (not imported);
4. ``pip download flyvis==1.2.0 --no-deps`` into a temporary folder, reading the JSON
   out of the wheel (a zip) without installing it.

Every candidate is checked against the known SHA-256 before it is used or cached.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from flyvis_study.atomic import write_bytes_atomic

CONNECTOME_NAME = "fib25-fib19_v2.2.json"


CONNECTOME_SHA256 = "bfbb0766251ff09e22723d0ebbf7b14793e70b3ae8ad0eea64eac9d28223351a"


CONNECTOME_SIZE = 618_148


FLYVIS_VERSION = "1.2.0"


_MEMBER = f"flyvis/connectome/{CONNECTOME_NAME}"


class ConnectomeFileError(RuntimeError):
    """The connectome file could not be found or failed its checksum."""


def cache_dir() -> Path:
    """Root of the project cache (datasets, connectome file)."""
    root = os.environ.get("FLYVIS_STUDY_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "flyvis_study"


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _verified(data: bytes, origin: str) -> bytes:
    digest = sha256_of(data)
    if digest != CONNECTOME_SHA256:
        raise ConnectomeFileError(
            f"{origin}: sha256 {digest} does not match the flyvis {FLYVIS_VERSION} connectome "
            f"file ({CONNECTOME_SHA256}, {CONNECTOME_SIZE} bytes)"
        )
    return data


def _from_installed_flyvis() -> bytes | None:
    try:
        dist = importlib.metadata.distribution("flyvis")
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(_MEMBER)))
    return path.read_bytes() if path.is_file() else None


def _from_pip_download() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", f"flyvis=={FLYVIS_VERSION}",
               "--no-deps", "--only-binary=:all:", "-q", "-d", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("flyvis-*.whl"))
        if proc.returncode != 0 or not wheels:
            raise ConnectomeFileError(
                "could not obtain the flyvis connectome file: set FLYVIS_CONNECTOME_FILE to a "
                f"local copy of {CONNECTOME_NAME}, or make `pip download flyvis=={FLYVIS_VERSION} "
                f"--no-deps` work (pip said: {proc.stderr.strip()[-400:]})"
            )
        with zipfile.ZipFile(wheels[0]) as zf:
            return zf.read(_MEMBER)


def connectome_file_path() -> Path:
    """Return a verified local path of ``fib25-fib19_v2.2.json``, fetching it if needed."""
    explicit = os.environ.get("FLYVIS_CONNECTOME_FILE")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConnectomeFileError(f"FLYVIS_CONNECTOME_FILE={explicit}: no such file")
        try:
            _verified(path.read_bytes(), f"FLYVIS_CONNECTOME_FILE={explicit}")
        except ConnectomeFileError as err:
            raise ConnectomeFileError(f"{err}; point it at {CONNECTOME_NAME} of flyvis {FLYVIS_VERSION}, "
                                      "or unset it to use the cached or downloaded copy") from None
        return path
    cached = cache_dir() / "connectome" / CONNECTOME_NAME
    if cached.is_file():
        try:
            _verified(cached.read_bytes(), str(cached))
            return cached
        except ConnectomeFileError:
            cached.unlink()  # corrupt cache entry: fetch again
    data = _from_installed_flyvis()
    origin = "installed flyvis distribution"
    if data is None:
        data, origin = _from_pip_download(), f"flyvis-{FLYVIS_VERSION} wheel"
    write_bytes_atomic(cached, _verified(data, origin))
    return cached


def connectome_problem() -> str | None:
    """None when the connectome file is found and verified (``connectome_file_path``); else one
    line saying why, for a check made before any compute."""
    try:
        connectome_file_path()
    except ConnectomeFileError as err:
        return f"connectome file: {err}"
    return None
