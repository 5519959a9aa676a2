"""The training loss of R stacked replicas: one value per replica, each that of ``train.loss``.

For replica r with batch (v_r, I_r, y_r) (B, N) and its epoch's coefficients c_r:

    L_r = ||pred_r - y_r||_2
        + c_r[g_phi_diff] ||relu(h_r(v0) - h_r(1.05 v0))||_2
        + c_r[g_phi_norm] ||h_r(2 xnorm_r) - 2 xnorm_r||_2
        + c_r[W_L1] ||W_r||_1 + c_r[W_L2] ||W_r||_2
        + sum over g_phi's, then f_theta's tensors p of c_r[*_L1] ||p_r||_1 + c_r[*_L2] ||p_r||_2

(all norms unsquared; v0 = v_r[0]; the regulariser rows of g_phi see a detached embedding;
the coefficients are the schedule's, ``train.schedule.coefficients``, where W L2 is 0 while W L1 is on). A term
is computed when any replica's coefficient is positive; a replica whose coefficient is 0 gets
0 times the term, whose gradient is exactly 0.
The stack's objective is sum_r L_r: replicas share no parameter, so each one's gradient is
that of its own L_r.
"""

from __future__ import annotations

import torch

from flyvis_study.stacking.model import StackedGNN

COEFFICIENTS = ("W_L1", "W_L2", "g_phi_L1", "g_phi_L2", "f_theta_L1", "f_theta_L2", "g_phi_diff", "g_phi_norm")


def coefficient_tensors(coeffs: list[dict[str, float]], like: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each coefficient as an (R,) tensor (dtype and device of ``like``), from R per-replica dicts
    (``train.schedule.coefficients``)."""
    return {k: torch.tensor([c[k] for c in coeffs], dtype=like.dtype, device=like.device) for k in COEFFICIENTS}


def _norms(tensors: list[torch.Tensor], ord: int) -> torch.Tensor:
    """sum over tensors p (R, ...) of ||p_r||_ord, per replica -> (R,)."""
    total = None
    for p in tensors:
        n = torch.linalg.vector_norm(p.flatten(1), ord, dim=1)
        total = n if total is None else total + n
    return total


def stacked_training_loss(gnn: StackedGNN, v: torch.Tensor, I: torch.Tensor, y: torch.Tensor,
                          c: dict[str, torch.Tensor], active: dict[str, bool], xnorm: torch.Tensor) -> torch.Tensor:
    """L_r for every replica (module docstring): v, I, y (R, B, N); c: (R,) coefficients;
    ``active[k]``: whether any replica's coefficient k is positive; xnorm (R,). Returns (R,)."""
    p = gnn.parameters()
    R, B, N = v.shape
    v0 = v[:, 0].detach()
    reg = [v0, 1.05 * v0] if active["g_phi_diff"] else []
    if active["g_phi_norm"]:
        reg.append((2 * xnorm).unsqueeze(1).expand(R, N))
    rows = torch.cat([v, torch.stack(reg, 1)], 1) if reg else v
    h = gnn.edge_activation(p, rows, n_live=B)
    pred = gnn.update(p, v, gnn.aggregate(p, h[:, :B]), I)
    loss = torch.linalg.vector_norm((pred - y).flatten(1), dim=1)
    if active["g_phi_diff"]:
        loss = loss + c["g_phi_diff"] * torch.linalg.vector_norm(torch.relu(h[:, B] - h[:, B + 1]), dim=1)
    if active["g_phi_norm"]:
        loss = loss + c["g_phi_norm"] * torch.linalg.vector_norm(h[:, -1] - 2 * xnorm.unsqueeze(1), dim=1)
    if active["W_L1"]:
        loss = loss + c["W_L1"] * p.W.abs().sum(1)
    if active["W_L2"]:
        loss = loss + c["W_L2"] * torch.linalg.vector_norm(p.W, dim=1)
    for name, mlp in (("g_phi", p.g_phi), ("f_theta", p.f_theta)):
        if active[f"{name}_L1"]:
            loss = loss + c[f"{name}_L1"] * _norms(mlp.parameters(), 1)
        if active[f"{name}_L2"]:
            loss = loss + c[f"{name}_L2"] * _norms(mlp.parameters(), 2)
    return loss
