"""The GNN ``flyvis_A``: per-neuron edge MLP, per-edge weights, update MLP.

For an edge e = (j -> i) (j presynaptic source, i postsynaptic target):

    h_j   = g_phi(v_j, a_j)^2                         (edge MLP on the *source* only)
    m_e   = W_e * h_j
    M_i   = sum_{e: tgt(e) = i} m_e
    dv_i/dt_hat = f_theta(v_i, a_i, M_i, I_i)         (input order v, a, M, I)

Because g_phi depends only on the source neuron it is evaluated once per neuron (N rows)
and h is gathered along the edges by a torch_geometric ``MessagePassing`` layer (aggr "add",
``message(h_j, w) = h_j * w_e``; ``model.message_passing``): identical maths to the reference's
per-edge evaluation (E rows, ~31.6x more at extent 8), which ``model.naive`` keeps as the
parity oracle (a ``MessagePassing`` layer as well).

Shapes: v, I: (B, N); a: (N, d_emb); W: (E,); output (B, N).
Parameters at extent 8 (hidden 80, 3 layers, d_emb 2): g_phi 6,881, f_theta 7,041,
a 27,482, W 434,112.

Split first layer. Both MLPs read the per-neuron embedding a_n next to per-row scalars
(v, M, I). Their first Linear layer is evaluated as

    z[r, n] = sum_k X_k[r, n] w_k + (U a_n + b)        (w_k, U: columns of its weight)

with the embedding term U a_n + b computed once per neuron (N x hidden) and broadcast over
the R row blocks (batch frames, regulariser frames, evaluation grid points), instead of a
matrix product with K = 1 + d (+2) inner size on R x N concatenated rows. Same maths
(tested against the plain path and the per-edge oracle); on the CPU it removes the
slowest products of the step (skinny K = 3 products and their backward). ``MLP.forward``
(the plain path on concatenated inputs) stays the reference form used by ``model.naive``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from flyvis_study.config import ModelConfig
from flyvis_study.model.message_passing import SynapticSum
from flyvis_study.model.mlp import MLP


class FlyVisGNN(nn.Module):
    """Message-passing model of the optic lobe's dynamics (see module docstring).

    Args:
        n_neurons: N.
        edge_src, edge_tgt: (E,) long tensors, presynaptic j and postsynaptic i.
        config: hidden size, layers, embedding size, W initialisation.
        generator: torch.Generator for every random initial value (training.seed).
        mlp_backward: how training differentiates both MLPs ("chunked" or "autograd",
            ``model.mlp``; same gradients).
    """

    def __init__(self, n_neurons: int, edge_src: torch.Tensor, edge_tgt: torch.Tensor,
                 config: ModelConfig = ModelConfig(), generator: torch.Generator | None = None,
                 mlp_backward: str = "chunked"):
        super().__init__()
        d = config.embedding_dim
        self.config = config
        self.n_neurons = n_neurons
        self.g_phi = MLP(1 + d, config.hidden_dim, 1, config.n_layers, generator, mlp_backward)
        self.f_theta = MLP(1 + d + 2, config.hidden_dim, 1, config.n_layers, generator, mlp_backward)
        self.embedding = nn.Parameter(torch.ones(n_neurons, d))
        n_edges = int(edge_src.numel())
        if config.w_init_mode == "zeros":
            w = torch.zeros(n_edges)
        else:
            w = torch.randn(n_edges, generator=generator)
            if config.w_init_mode == "randn_scaled":
                w = w * (config.w_init_scale / math.sqrt(n_edges))
        self.W = nn.Parameter(w)
        self.register_buffer("edge_src", edge_src.long(), persistent=False)
        self.register_buffer("edge_tgt", edge_tgt.long(), persistent=False)
        self.register_buffer("edge_index", torch.stack([self.edge_src, self.edge_tgt]), persistent=False)
        self.synaptic_sum = SynapticSum()

    def edge_activation(self, v: torch.Tensor, a: torch.Tensor, n_live: int | None = None) -> torch.Tensor:
        """h = g_phi(v, a)^2 (or g_phi itself if ``g_phi_positive`` is off).

        v (R, N) or (N,); a (N, d). Only the first ``n_live`` rows pass gradient to ``a``
        (default all). Returns v's shape.
        """
        rows = v.reshape(-1, v.shape[-1])
        g = self.g_phi.forward_split([rows], a, 1, n_live).reshape(v.shape)
        return g * g if self.config.g_phi_positive else g

    def aggregate(self, h: torch.Tensor) -> torch.Tensor:
        """M_i = sum over edges j -> i of W_e h_j; h (B, N) -> M (B, N) (a PyG ``MessagePassing``
        layer, ``model.message_passing.SynapticSum``)."""
        return self.synaptic_sum(h, self.edge_index, self.W)

    def update(self, v: torch.Tensor, a: torch.Tensor, M: torch.Tensor | None, I: torch.Tensor | None) -> torch.Tensor:
        """f_theta(v, a, M, I) per neuron; v, M, I (B, N) -> (B, N); ``None`` for M or I means 0."""
        rows = lambda x: None if x is None else x.reshape(-1, x.shape[-1])  # noqa: E731
        return self.f_theta.forward_split([rows(v), rows(M), rows(I)], a, 1).reshape(v.shape)

    def forward(self, v: torch.Tensor, I: torch.Tensor) -> torch.Tensor:
        """Predicted dv/dt for states v (B, N) and inputs I (B, N)."""
        a = self.embedding
        M = self.aggregate(self.edge_activation(v, a))
        return self.update(v, a, M, I)

    def use_mlp_backward(self, kind: str) -> None:
        """Switch how training differentiates both MLPs ("chunked" or "autograd")."""
        self.g_phi.backward = self.f_theta.backward = kind

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The four optimiser groups: W, g_phi, f_theta, embedding."""
        return {"W": [self.W], "g_phi": list(self.g_phi.parameters()),
                "f_theta": list(self.f_theta.parameters()), "embedding": [self.embedding]}
