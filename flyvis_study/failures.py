"""A run's outcome, in one vocabulary: its status, its failure kind, and which exceptions are the
machine's fault rather than the run's.

Every run file, block table, log and report says how a run ended with these two fields:

| status (``Status``) | failure_kind (``FailureKind``) | meaning                                        | on a rerun |
|---------------------|--------------------------------|------------------------------------------------|------------|
| converged           | ""                             | trained and evaluated, connectivity_R2 > 0.8   | kept       |
| partial             | ""                             | trained and evaluated, connectivity_R2 0.3-0.8 | kept       |
| failed              | diverged                       | non-finite loss or parameters                  | kept       |
| failed              | unrecovered                    | trained, but connectivity_R2 < 0.3             | kept       |
| failed              | evaluation                     | trained, but connectivity_R2 not measured      | kept       |
| failed              | infrastructure                 | out of memory, I/O, CUDA, a lost worker        | recomputed |
| failed              | error                          | any other exception (a bug or bad data)        | recomputed |

Training itself only says whether the run diverged (``train.state.TrainResult.diverged``); the
status is given once the run is evaluated (``run_status``). A run whose evaluation fails in one
section (e.g. clustering) keeps every other metric; the failed section's metrics are NaN and
``metric_failures`` says why. Both enums are strings, so tables and files hold their values.
"""

from __future__ import annotations

import math
from enum import StrEnum

CONVERGED_CONN = 0.8  # connectivity_R2 above it: converged
UNRECOVERED_CONN = 0.3  # below it: failed (unrecovered)


class Status(StrEnum):
    CONVERGED = "converged"
    PARTIAL = "partial"
    FAILED = "failed"


class FailureKind(StrEnum):
    NONE = ""
    DIVERGED = "diverged"
    UNRECOVERED = "unrecovered"
    EVALUATION = "evaluation"
    INFRASTRUCTURE = "infrastructure"
    ERROR = "error"


FINAL_FAILURES = (FailureKind.DIVERGED, FailureKind.UNRECOVERED, FailureKind.EVALUATION)
RETRIED_FAILURES = (FailureKind.INFRASTRUCTURE, FailureKind.ERROR)


def run_status(connectivity_r2: float, diverged: bool) -> tuple[Status, FailureKind]:
    """The outcome of a trained run from its connectivity_R2 (NaN: not measured)."""
    if diverged:
        return Status.FAILED, FailureKind.DIVERGED
    if not math.isfinite(connectivity_r2):
        return Status.FAILED, FailureKind.EVALUATION
    if connectivity_r2 < UNRECOVERED_CONN:
        return Status.FAILED, FailureKind.UNRECOVERED
    return (Status.CONVERGED if connectivity_r2 > CONVERGED_CONN else Status.PARTIAL), FailureKind.NONE


def is_infrastructure_error(err: BaseException) -> bool:
    """Resource and environment failures: memory, I/O, CUDA, a lost Dask worker."""
    text = str(err)
    if isinstance(err, (MemoryError, OSError, TimeoutError)) or "CUDA" in text or "out of memory" in text:
        return True
    return type(err).__name__ in ("KilledWorker", "CommClosedError")


def failure_kind_of(err: BaseException) -> FailureKind:
    """infrastructure for resource and environment failures, else error (both are retried)."""
    return FailureKind.INFRASTRUCTURE if is_infrastructure_error(err) else FailureKind.ERROR
