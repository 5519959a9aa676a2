"""The MLP's layer kernels shared by the model, its evaluation predictor and ChunkedMLP.

``split_first_layer``: the first Linear + ReLU on split input (per-neuron embedding term plus
per-row scalar features), see ``model.gnn``.

Linear + ReLU as one oneDNN call for CPU inference (and the forward of training's ChunkedMLP):

``torch.ops.mkldnn._linear_pointwise(h, W, b, "relu")`` computes relu(h W^T + b) with the bias
and the ReLU in the GEMM's epilogue: no separate bias-broadcast copy and ReLU pass over the
(rows, hidden) output; faster than ``addmm`` + ``relu_`` on CPU (docs/benchmarks.md), equal
results (tested). It is a PyTorch-internal op (the one TorchInductor emits for
CPU), so it is used only where it exists, on CPU float32 tensors, without autograd; every
other case takes ``addmm`` + in-place ReLU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def fused_linear_relu_available(h: torch.Tensor) -> bool:
    """True where the fused oneDNN op applies: CPU, float32, autograd off, op present."""
    return (h.device.type == "cpu" and h.dtype == torch.float32 and not torch.is_grad_enabled()
            and torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


def linear_relu(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """relu(h W^T + b): h (R, in), W (out, in), b (out,) -> (R, out)."""
    if fused_linear_relu_available(h):
        return torch.ops.mkldnn._linear_pointwise(h, weight, bias, "relu", [], "")
    return torch.addmm(bias, h, weight.t()).relu_()


def column_sums(g: torch.Tensor) -> torch.Tensor:
    """sum over rows of g (rows, H) -> (H,). On CUDA a matrix-vector product with a ones vector:
    the reduction kernel PyTorch picks for a tall, 80-wide matrix ran at 38.5 us on an H100 where
    cuBLAS's GEMV of the same shape took 16.6 us (68,705 x 80, the g_phi rows of a step)."""
    if g.device.type == "cuda":
        return torch.mv(g.t(), g.new_ones(g.shape[0]))
    return g.sum(0)


def split_first_layer(embedding_term: torch.Tensor, Wf: torch.Tensor, features, relu: bool = True) -> torch.Tensor:
    """relu(embedding_term + sum_k X_k[..., None] Wf[:, k]), broadcast: (N, H) with K x (R, N) -> (R, N, H),
    or neuron-major (N, 1, H) with K x (N, R) -> (N, R, H).

    On a CPU with K >= 2 features: stack(X) @ Wf^T, then the embedding term added in place (a
    small GEMM and one broadcast add), because PyTorch's in-place ``addcmul_`` with two
    broadcast operands is not vectorised there; with K = 1 the single ``addcmul`` is the faster
    form. CUDA keeps the ``addcmul`` chain (the form measured on the GPU). Measurements:
    docs/benchmarks.md.
    """
    if len(features) > 1 and embedding_term.device.type == "cpu":
        z = torch.matmul(torch.stack(features, -1), Wf.t()).add_(embedding_term)
        return z.relu_() if relu else z
    z = torch.addcmul(embedding_term, features[0].unsqueeze(-1), Wf[:, 0])
    for k in range(1, len(features)):
        z.addcmul_(features[k].unsqueeze(-1), Wf[:, k])
    return z.relu_() if relu else z


@dataclass(frozen=True)
class FirstLayerLayout:
    """Where the split first layer's inputs sit among its weight's columns (weight (H, n_in)).

    The embedding a (N, d) occupies columns embedding_at .. embedding_at + d - 1; the used
    scalar features X_k occupy ``feature_columns`` (in order; unused features' columns get a
    zero gradient). ``split`` and ``join`` are column selections and their transpose, written
    as one ``stack`` / ``cat`` each: inside the hand-written backwards they replace the select
    and slice backwards of autograd (one zero-filled (H, n_in) tensor and one add per column).
    """

    embedding_at: int
    embedding_dim: int
    feature_columns: tuple[int, ...]
    n_in: int

    def split(self, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """weight (H, n_in) -> U (H, d) (a view), Wf (H, K) (the feature columns, stacked)."""
        at, d = self.embedding_at, self.embedding_dim
        return weight[:, at:at + d], torch.stack([weight[:, c] for c in self.feature_columns], 1)

    def join(self, grad_U: torch.Tensor, grad_Wf: torch.Tensor) -> torch.Tensor:
        """The gradient of weight (H, n_in) from those of U (H, d) and Wf (H, K)."""
        at, d = self.embedding_at, self.embedding_dim
        k_of = {c: k for k, c in enumerate(self.feature_columns)}
        pieces = []
        for c in range(self.n_in):
            if at <= c < at + d:
                pieces.append(grad_U[:, c - at:c - at + 1])
            elif c in k_of:
                pieces.append(grad_Wf[:, k_of[c]:k_of[c] + 1])
            else:
                pieces.append(grad_U.new_zeros(grad_U.shape[0], 1))
        return torch.cat(pieces, 1)
