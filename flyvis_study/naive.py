"""Naive per-edge evaluation of the GNN (the reference's way): the parity oracle.

    m_e = W_e * g_phi(v_j, a_j)^2   evaluated on every edge row (B x E MLP rows)

Same parameters as ``FlyVisGNN``; used by the tests (forward and gradient parity) and by
the benchmark (the naive baseline timed in the same process).
"""

from __future__ import annotations

import torch

from .model import FlyVisGNN


def naive_forward(model: FlyVisGNN, v: torch.Tensor, I: torch.Tensor) -> torch.Tensor:
    """dv/dt_hat with g_phi evaluated per edge; v, I (B, N) -> (B, N)."""
    a = model.embedding
    src, tgt = model.edge_src, model.edge_tgt
    v_src = v.index_select(-1, src)  # (B, E)
    x = torch.cat([v_src.unsqueeze(-1), a[src].expand(*v_src.shape, a.shape[-1])], dim=-1)
    g = model.g_phi(x).squeeze(-1)
    h = g * g if model.config.g_phi_positive else g
    M = torch.zeros_like(v).index_add_(-1, tgt, model.W * h)
    return model.update(v, a, M, I)
