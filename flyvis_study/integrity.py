"""File checksums: what was written is what is read, or the reader knows.

A checked file ``X`` has a sidecar ``X.sha256`` holding ``<sha256 hex>  <size in bytes>``,
written by ``atomic_path(X, checksum=True)`` after the content and before the rename, so a
file never looks valid unless it is complete. ``verify(X)`` returns None when the file matches
its sidecar, else the reason in a few words ("missing", "no checksum", "size 10 != 12 bytes",
"sha256 mismatch"). Dataset folders keep the same (size, sha256) pairs in their ``meta.json``
(``manifest`` / ``verify_manifest``).

Digests are memoised per (path, size, mtime, inode): a file reread in one process is hashed
once; any rewrite (new mtime) is hashed again.

A repair (a damaged file regenerated, recomputed or passed over) is announced by ``repaired``:
one ``IntegrityWarning``, and one line appended to the repairs log named by
``$FLYVIS_STUDY_REPAIRS_LOG`` when set. A block sets it to ``<out_dir>/.flyvis-study.repairs.log``
(inherited by its kernel and Dask workers on this host): the CLI prints each new line on the
terminal while the block runs, and the block file keeps the lines of its own run (``repairs``),
shown in the report's verdict.
"""

from __future__ import annotations

import functools
import hashlib
import os
import warnings
from pathlib import Path

SIDECAR_SUFFIX = ".sha256"
REPAIRS_ENV = "FLYVIS_STUDY_REPAIRS_LOG"
REPAIRS_LOG = ".flyvis-study.repairs.log"


class IntegrityWarning(UserWarning):
    """A file failed its checksum (or could not be read) and is being regenerated or recomputed."""


def repaired(message: str, stacklevel: int = 2) -> None:
    """Announce a repair: an ``IntegrityWarning`` from the caller's caller (``stacklevel`` as for
    ``warnings.warn``, counted from the caller), and a line in ``$FLYVIS_STUDY_REPAIRS_LOG``."""
    warnings.warn(message, IntegrityWarning, stacklevel=stacklevel + 1)
    log = os.environ.get(REPAIRS_ENV)
    if log:
        with open(log, "a", encoding="utf-8") as fh:  # one short write in append mode: lines never interleave
            fh.write(" ".join(message.split()) + "\n")


def repairs_since(log: str | Path, offset: int) -> tuple[list[str], int]:
    """The lines of a repairs log after byte ``offset``, and the new offset (no log: none)."""
    try:
        with open(log, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return [], offset
    complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits for the next read
    return complete.decode("utf-8", "replace").splitlines(), offset + len(complete)


def sidecar(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def file_digest(path: str | Path) -> str:
    """sha256 hex digest of a file's content (memoised on size, mtime and inode)."""
    st = os.stat(path)
    return _digest(str(Path(path).resolve()), st.st_size, st.st_mtime_ns, st.st_ino)


@functools.lru_cache(maxsize=4096)
def _digest(path: str, size: int, mtime_ns: int, inode: int) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def sidecar_text(content: str | Path) -> str:
    """The sidecar line describing the bytes now in ``content``: ``<sha256 hex>  <size in bytes>``."""
    return f"{file_digest(content)}  {os.path.getsize(content)}\n"


def verify(path: str | Path) -> str | None:
    """None when ``path`` matches its sidecar; else why not ("missing", "no checksum", size, sha256)."""
    path = Path(path)
    if not path.is_file():
        return "missing"
    try:
        digest, size = sidecar(path).read_text().split()
    except (OSError, ValueError):
        return "no checksum"
    return _compare(path, digest, int(size))


def manifest(folder: str | Path, names: list[str]) -> dict[str, dict]:
    """{name: {"bytes": size, "sha256": digest}} of files in ``folder``."""
    folder = Path(folder)
    return {n: {"bytes": os.path.getsize(folder / n), "sha256": file_digest(folder / n)} for n in names}


def verify_manifest(folder: str | Path, entries: dict[str, dict]) -> tuple[str, str] | None:
    """None when every file matches its manifest entry; else (file name, reason) of the first that does not."""
    folder = Path(folder)
    for name, entry in entries.items():
        path = folder / name
        if not path.is_file():
            return name, "missing"
        reason = _compare(path, entry["sha256"], int(entry["bytes"]))
        if reason:
            return name, reason
    return None


def compare_entry(path: str | Path, entry: dict) -> str | None:
    """None when ``path`` matches a manifest entry ``{"bytes", "sha256"}``; else why not."""
    path = Path(path)
    if not path.is_file():
        return "missing"
    return _compare(path, entry["sha256"], int(entry["bytes"]))


def _compare(path: Path, digest: str, size: int) -> str | None:
    actual = os.path.getsize(path)
    if actual != size:
        return f"size {actual} != {size} bytes"
    if file_digest(path) != digest:
        return "sha256 mismatch"
    return None
