"""The float32 matrix-product precision of the training step on CUDA (``training.matmul_precision``).

``ieee``: FP32 products and sums. ``tf32``: TensorFloat-32 tensor cores (Ampere and later): each
operand is rounded to a 10-bit mantissa (relative error <= 2^-11 ~ 4.9e-4 per operand) and the
products are summed in FP32, so a product of length K errs by about 2^-10 relative per term,
independently of K. The step's GEMMs (the 80-wide hidden layers of g_phi and f_theta) then run
on tensor cores. CPU matrix products do not read this setting: on a CPU both values give the
same numbers, bit for bit (tested).

The setting is torch's process-wide ``torch.backends.cuda.matmul.fp32_precision``; the context
manager sets it around one step (or one CUDA-graph capture, whose kernels are chosen then) and
restores the caller's value, so evaluation and other runs in the process keep theirs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

PRECISIONS = ("ieee", "tf32")


@contextmanager
def cuda_matmul_precision(precision: str) -> Iterator[None]:
    """Run the body with CUDA float32 matmuls at ``precision`` (``ieee`` | ``tf32``), then restore."""
    if precision not in PRECISIONS:
        raise ValueError(f"training.matmul_precision: {precision!r}; allowed: {', '.join(PRECISIONS)}")
    matmul = torch.backends.cuda.matmul
    before = matmul.fp32_precision
    matmul.fp32_precision = precision
    try:
        yield
    finally:
        matmul.fp32_precision = before
