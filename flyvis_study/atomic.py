"""Atomic file writes: a file is either absent, its old version, or complete, never half-written.

``atomic_path(path)`` yields a temporary sibling (``.name.<host>.<pid>.<token>.tmp``, same
folder, so the final ``os.replace`` is atomic on POSIX, and unique across hosts sharing the
folder) and renames it onto ``path`` when the block ends without an exception; on an
exception the temporary file is removed and ``path`` is untouched. Every writer of a result
file in the package goes through it. With ``checksum=True`` the file's ``.sha256`` sidecar
(``flyvis_study.integrity``) is written before the rename.
"""

from __future__ import annotations

import json
import math
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from flyvis_study.integrity import sidecar, sidecar_text


@contextmanager
def atomic_path(path: str | Path, checksum: bool = False) -> Iterator[Path]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        if checksum:  # the sidecar describes the bytes about to become ``path``
            write_text_atomic(sidecar(path), sidecar_text(tmp))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def json_safe(x):
    """``x`` with numpy scalars as Python numbers and non-finite floats as None (valid JSON)."""
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def write_json_atomic(path: str | Path, obj) -> None:
    write_text_atomic(path, json.dumps(json_safe(obj), indent=1))
