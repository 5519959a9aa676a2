"""CPU memory allocator setting for training: keep freed tensor memory in the process.

A training step at full scale allocates and frees ~20 activation tensors of 4-22 MB. With
glibc's default policy these are mmap-ed (or the heap top is trimmed) and returned to the
kernel on free, so every step faults thousands of fresh pages in again (the cost is measured
in docs/benchmarks.md). ``keep_freed_memory`` sets glibc's malloc to serve
blocks up to 32 MB from its heap and to never trim the heap, the in-process equivalent of
``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=2147483647``. The peak resident
memory is unchanged (it is the peak of live tensors); the process just does not hand
freed pages back until ``release_freed_memory`` (``malloc_trim``). Both are process-wide, so
only the entry points call them (the CLI's train and bench, a study task's ``run_one``),
never ``train()`` or ``evaluate()``. Elsewhere (macOS, musl, Windows) both do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

M_TRIM_THRESHOLD = -1


M_MMAP_THRESHOLD = -3


MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's upper limit on 64-bit


TRIM_THRESHOLD_BYTES = 2**31 - 1


_applied: bool | None = None


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def keep_freed_memory() -> bool:
    """Apply the setting once per process (idempotent); True if glibc accepted it."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    libc = _glibc()
    if libc is None:
        return False
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    return _applied


def release_freed_memory() -> bool:
    """Return the heap's free pages to the kernel now (``malloc_trim(0)``); True if any were."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    return bool(libc.malloc_trim(0))
