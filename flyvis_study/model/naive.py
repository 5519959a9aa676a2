"""Naive per-edge evaluation of the GNN (the reference's way): the parity oracle.

    m_e = W_e * g_phi(v_j, a_j)^2   evaluated on every edge row (B x E MLP rows)

The per-edge sum is the torch_geometric layer ``model.message_passing.PerEdgeSynapses``
(node features [v, a] gathered to the edges, g_phi on every edge row). Every MLP call here
takes the plain path (``MLP.forward`` on concatenated inputs
[v, a, ...]), as the reference does. Same parameters as ``FlyVisGNN``; used by the tests
(forward and gradient parity) and by the benchmark (the naive baseline timed in the same
process).
"""

from __future__ import annotations

import torch

from flyvis_study.model.gnn import FlyVisGNN
from flyvis_study.model.message_passing import PerEdgeSynapses


def naive_edge_activation(model: FlyVisGNN, v: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """g_phi(v, a)^2 on concatenated rows; v (..., N), a (N, d) -> v's shape."""
    x = torch.cat([v.unsqueeze(-1), a.expand(*v.shape, a.shape[-1])], dim=-1)
    g = model.g_phi(x).squeeze(-1)
    return g * g if model.config.g_phi_positive else g


def naive_forward(model: FlyVisGNN, v: torch.Tensor, I: torch.Tensor) -> torch.Tensor:
    """dv/dt_hat with g_phi evaluated per edge (a PyG layer, ``PerEdgeSynapses``); v, I (B, N) -> (B, N)."""
    a = model.embedding
    x = torch.cat([v.unsqueeze(-1), a.expand(*v.shape, a.shape[-1])], dim=-1)  # (B, N, 1 + d)
    M = PerEdgeSynapses(model.g_phi, model.config.g_phi_positive)(x, model.edge_index, model.W)
    x = torch.cat([v.unsqueeze(-1), a.expand(*v.shape, a.shape[-1]), M.unsqueeze(-1), I.unsqueeze(-1)], -1)
    return model.f_theta(x).squeeze(-1)
