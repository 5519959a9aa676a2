"""The plain MLP of both GNN functions (g_phi, f_theta), with its split-input forward.

See ``model.gnn`` for the split first layer. ``MLP.backward`` says how training
differentiates it: "chunked" = ``fast.chunked_mlp.ChunkedMLP`` (one function with a
hand-written backward; on a CPU over cache-sized chunks, on a GPU over all rows at once), or
"autograd" = ``fast.split_first_layer`` + autograd through the hidden layers. Same maths and
gradients (tested); the choice is ``training.mlp_backward``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from flyvis_study.fast.chunked_mlp import ROWS_PER_CHUNK, ChunkedMLP
from flyvis_study.fast.fused_ops import FirstLayerLayout, linear_relu
from flyvis_study.fast.split_first_layer import _SplitFirstLayer

MLP_BACKWARDS = ("chunked", "autograd")


class MLP(nn.Module):
    """``n_layers`` Linear layers in -> hidden -> ... -> out, ReLU between, linear output.

    Initialisation: first layer PyTorch's default (U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for
    weight and bias); later layers weights N(0, 0.1^2), biases 0. Drawn from ``generator``.
    """

    def __init__(self, n_in: int, hidden: int, n_out: int, n_layers: int,
                 generator: torch.Generator | None = None, backward: str = "chunked"):
        super().__init__()
        if backward not in MLP_BACKWARDS:
            raise ValueError(f"backward {backward!r}: allowed: {', '.join(MLP_BACKWARDS)}")
        self.backward = backward
        sizes = [n_in] + [hidden] * (n_layers - 1) + [n_out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        with torch.no_grad():
            first = self.layers[0]
            bound = 1.0 / math.sqrt(first.in_features)
            first.weight.uniform_(-bound, bound, generator=generator)
            first.bias.uniform_(-bound, bound, generator=generator)
            for layer in self.layers[1:]:
                layer.weight.normal_(0.0, 0.1, generator=generator)
                layer.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., n_in) -> (..., n_out).

        The plain path on a concatenated input: the reference form (``model.naive``, and the
        naive step of ``flyvis-study bench``). Without autograd the rows are flattened to one
        matrix and go through ``fused_ops.linear_relu`` and ``after_first_layer`` (same maths,
        tested; no extra activation tensors).
        """
        if torch.is_grad_enabled():
            for layer in self.layers[:-1]:
                x = torch.relu(layer(x))
            return self.layers[-1](x)
        first = self.layers[0]
        h = linear_relu(x.reshape(-1, x.shape[-1]), first.weight, first.bias)
        return self.after_first_layer(h).reshape(*x.shape[:-1], self.layers[-1].out_features)

    def forward_split(self, features: list[torch.Tensor | None], embedding: torch.Tensor, embedding_at: int,
                      n_live: int | None = None) -> torch.Tensor:
        """The same function on the input [X_0 .. X_{at-1}, a_n, X_at ..] without building it.

        ``features``: the scalar input columns in order, each (R, N) (``None`` = all zeros,
        skipped); ``embedding``: a (N, d), occupying input columns embedding_at .. +d;
        ``n_live``: row blocks whose rows pass gradient to ``embedding`` (default all R).
        Returns (R, N, n_out). Training goes through ``ChunkedMLP`` (one function, hand-written
        backward) when ``self.backward`` is "chunked"; else ``_SplitFirstLayer`` then
        ``after_first_layer`` under autograd.
        """
        first = self.layers[0]
        used, layout = self.split_layout(features, embedding_at, embedding.shape[-1])
        n_live = used[0].shape[0] if n_live is None else n_live
        last = self.layers[-1]
        device = embedding.device.type
        if torch.is_grad_enabled() and self.backward == "chunked" and last.out_features == 1:
            # training: whole MLP in one function with a hand-written backward (chunked_mlp.py)
            hidden = [p for layer in self.layers[1:-1] for p in (layer.weight, layer.bias)]
            rows_per_chunk = ROWS_PER_CHUNK if device == "cpu" else used[0].numel()
            out = ChunkedMLP.apply(n_live, rows_per_chunk, layout, embedding, first.weight, first.bias,
                                   len(self.layers) - 2, *hidden, last.weight, last.bias, *used)
            return out.unsqueeze(-1)
        h = _SplitFirstLayer.apply(embedding, first.weight, first.bias, layout, n_live, *used)
        return self.after_first_layer(h)

    def split_layout(self, features: list[torch.Tensor | None], embedding_at: int,
                     d: int) -> tuple[list[torch.Tensor], FirstLayerLayout]:
        """The non-``None`` features and where they and the embedding sit in the first layer."""
        columns = [k if k < embedding_at else k + d for k in range(len(features))]
        used = [(f, c) for f, c in zip(features, columns) if f is not None]
        if not used:
            raise ValueError("forward_split needs at least one non-zero feature")
        layout = FirstLayerLayout(embedding_at, d, tuple(c for _, c in used), self.layers[0].in_features)
        return [f for f, _ in used], layout

    def after_first_layer(self, h: torch.Tensor) -> torch.Tensor:
        """Hidden Linear+ReLU layers (``fused_ops.linear_relu``), then the output layer.

        h (..., hidden) -> (..., n_out)."""
        lead = h.shape[:-1]
        h = h.reshape(-1, h.shape[-1])
        for layer in self.layers[1:-1]:
            h = linear_relu(h, layer.weight, layer.bias)
        last = self.layers[-1]
        if last.out_features == 1:  # matrix-vector product: its backward is an outer product, not a K=1 GEMM
            return torch.addmv(last.bias, h, last.weight.view(-1)).reshape(*lead, 1)  # a view: no select backward
        return torch.addmm(last.bias, h, last.weight.t()).reshape(*lead, last.out_features)
