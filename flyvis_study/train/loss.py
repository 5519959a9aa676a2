"""The training loss: data term and every regulariser (fast path and naive baseline).

Silent-input anchor (``training.coeff_g_phi_silent`` = c_s): the data rarely show a
presynaptic neuron below 0, where the true synapse transmits nothing, so g_phi there is free
and its value enters every message as an offset that f_theta absorbs (``evaluation.readout``).
The anchor adds c_s ||g_phi(v_s, a)^2||_2 with v_s (N,) one voltage per neuron drawn
uniformly in [g_phi_silent_low, g_phi_silent_high] at every step (``train.loop``; embedding
detached, as in the other g_phi regularisers).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from flyvis_study.fast.penalties import norm_penalty
from flyvis_study.model.gnn import FlyVisGNN


def regulariser(model: FlyVisGNN, v_frame: torch.Tensor, coeffs: dict[str, float], xnorm: float,
                edge_activation: Callable | None = None, silent: torch.Tensor | None = None) -> torch.Tensor:
    """Sum of the regularisers (all norms unsquared) at one frame's voltages v_frame (N,);
    ``silent`` (N,): the anchor's voltages of this step (required when ``g_phi_silent`` > 0).

    ``edge_activation(v, a)``: how g_phi^2 is evaluated (default ``model.edge_activation``;
    the naive baseline passes its plain per-row form).
    """
    edge_activation = edge_activation or model.edge_activation
    terms = []
    if coeffs["W_L1"] > 0:  # the schedule turns W L2 off while W L1 is on (``train.schedule``)
        terms.append(coeffs["W_L1"] * model.W.abs().sum())
    if coeffs["W_L2"] > 0:
        terms.append(coeffs["W_L2"] * torch.linalg.vector_norm(model.W))
    for name, mlp in (("g_phi", model.g_phi), ("f_theta", model.f_theta)):
        c1, c2 = coeffs[f"{name}_L1"], coeffs[f"{name}_L2"]
        if c1 > 0 or c2 > 0:  # sum over the MLP's tensors of c1 ||p||_1 + c2 ||p||_2 (fast.penalties: few kernels)
            terms.append(norm_penalty(list(mlp.parameters()), c1, c2))
    a = model.embedding.detach()
    if coeffs["g_phi_diff"] > 0:
        v = v_frame.detach()
        diff = edge_activation(v, a) - edge_activation(1.05 * v, a)
        terms.append(coeffs["g_phi_diff"] * torch.linalg.vector_norm(torch.relu(diff)))
    if coeffs["g_phi_norm"] > 0:
        x = torch.full_like(v_frame, 2 * xnorm)
        terms.append(coeffs["g_phi_norm"] * torch.linalg.vector_norm(edge_activation(x, a) - 2 * xnorm))
    if coeffs.get("g_phi_silent", 0.0) > 0:
        terms.append(coeffs["g_phi_silent"] * torch.linalg.vector_norm(edge_activation(_silent(silent), a)))
    if not terms:
        return model.W.new_zeros(())
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def _silent(silent: torch.Tensor | None) -> torch.Tensor:
    if silent is None:
        raise ValueError("silent: the anchor's voltages are required when coeff g_phi_silent > 0")
    return silent.detach()


def training_loss(model: FlyVisGNN, v: torch.Tensor, I: torch.Tensor, y: torch.Tensor,
                  coeffs: dict[str, float], xnorm: float, silent: torch.Tensor | None = None) -> torch.Tensor:
    """Data loss ||model(v, I) - y||_2 + ``regulariser(model, v[0], ..., silent)``, fused.

    The edge MLP rows of the batch (live embedding) and of the monotonicity and
    normalisation regularisers (embedding detached: ``n_live`` = B) go through g_phi in one
    call; identical maths to evaluating them separately (tested), with fewer passes.
    """
    a = model.embedding
    v0 = v[0].detach()
    reg_v = [v0, 1.05 * v0] if coeffs["g_phi_diff"] > 0 else []
    if coeffs["g_phi_norm"] > 0:
        reg_v.append(torch.full_like(v0, 2 * xnorm))
    anchored = coeffs.get("g_phi_silent", 0.0) > 0
    if anchored:
        reg_v.append(_silent(silent))
    B = v.shape[0]
    rows = torch.cat([v, torch.stack(reg_v)]) if reg_v else v
    h_data, *h_reg = model.edge_activation(rows, a, n_live=B).split([B] + [1] * len(reg_v))  # one cat backward
    pred = model.update(v, a, model.aggregate(h_data), I)
    loss = torch.linalg.vector_norm(pred - y)
    if coeffs["g_phi_diff"] > 0:
        h_v, h_105v, *h_reg = h_reg
        loss = loss + coeffs["g_phi_diff"] * torch.linalg.vector_norm(torch.relu(h_v - h_105v))
    if coeffs["g_phi_norm"] > 0:
        h_norm, *h_reg = h_reg
        loss = loss + coeffs["g_phi_norm"] * torch.linalg.vector_norm(h_norm - 2 * xnorm)
    if anchored:
        loss = loss + coeffs["g_phi_silent"] * torch.linalg.vector_norm(h_reg[0])
    nodiff = dict(coeffs, g_phi_diff=0.0, g_phi_norm=0.0, g_phi_silent=0.0)
    return loss + regulariser(model, v0, nodiff, xnorm)
