"""Failure kinds of a run, and which exceptions are the machine's fault rather than the run's.

| failure_kind   | meaning                                                       | on a rerun  |
|----------------|---------------------------------------------------------------|-------------|
| ""             | trained and evaluated (status converged or partial)           | kept        |
| diverged       | non-finite loss or parameters (status failed)                 | kept        |
| unrecovered    | trained, but connectivity_R2 < 0.3 (status failed)            | kept        |
| evaluation     | trained, but connectivity_R2 could not be measured (failed)   | kept        |
| infrastructure | out of memory, I/O, CUDA, a lost worker (exception)           | recomputed  |
| error          | any other exception (a bug or bad data)                       | recomputed  |

A run whose evaluation fails in one section (e.g. clustering) keeps every other metric; the
failed section's metrics are NaN and ``metric_failures`` says why.
"""

from __future__ import annotations

FINAL_FAILURES = ("diverged", "unrecovered", "evaluation")
RETRIED_FAILURES = ("infrastructure", "error")


def is_infrastructure_error(err: BaseException) -> bool:
    """Resource and environment failures: memory, I/O, CUDA, a lost Dask worker."""
    text = str(err)
    if isinstance(err, (MemoryError, OSError, TimeoutError)) or "CUDA" in text or "out of memory" in text:
        return True
    return type(err).__name__ in ("KilledWorker", "CommClosedError")


def failure_kind_of(err: BaseException) -> str:
    """'infrastructure' for resource and environment failures, else 'error' (both are retried)."""
    return "infrastructure" if is_infrastructure_error(err) else "error"
