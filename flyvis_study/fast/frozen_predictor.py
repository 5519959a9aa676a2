"""dv/dt_hat of a trained model with fixed parameters, for evaluation (no autograd)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from flyvis_study.fast.csr import target_csr
from flyvis_study.fast.fused_ops import split_first_layer

if TYPE_CHECKING:
    from flyvis_study.model.gnn import FlyVisGNN


class FrozenPredictor:
    """dv/dt_hat of a model with fixed parameters (evaluation): ``FlyVisGNN.forward``'s maths
    without autograd, with what does not depend on the state computed once: the embedding
    terms U a_n + b of both first layers (N x hidden each), their feature columns, and W as
    a CSR matrix (rows = targets; ``sparse.target_csr``). Those are snapshots while the hidden
    layers are read from the model, so build it when training is over and drop it after use.

    ``predictor(v, I)``: v, I (B, N) -> (B, N), equal to ``model(v, I)`` to float rounding.
    """

    @torch.no_grad()
    def __init__(self, model: FlyVisGNN):
        a = model.embedding.detach()
        d = a.shape[-1]
        self.positive = model.config.g_phi_positive
        self.g_phi, self.f_theta = model.g_phi, model.f_theta
        first_g, first_f = model.g_phi.layers[0], model.f_theta.layers[0]
        self.e_g = torch.addmm(first_g.bias, a, first_g.weight[:, 1:1 + d].t())
        self.e_f = torch.addmm(first_f.bias, a, first_f.weight[:, 1:1 + d].t())
        self.w_g = first_g.weight[:, :1].detach().clone()
        self.w_f = torch.cat([first_f.weight[:, :1], first_f.weight[:, 1 + d:]], 1).detach()  # v, M, I
        self.W = target_csr(model.edge_src.cpu().numpy(), model.edge_tgt.cpu().numpy(),
                            model.W.detach().cpu().numpy(), model.n_neurons, model.W.device)

    @torch.no_grad()
    def __call__(self, v: torch.Tensor, I: torch.Tensor) -> torch.Tensor:
        g = self.g_phi.after_first_layer(split_first_layer(self.e_g, self.w_g, [v])).squeeze(-1)
        h = g * g if self.positive else g
        M = torch.mv(self.W, h[0]).unsqueeze(0) if h.shape[0] == 1 else (self.W @ h.t()).t()
        if v.device.type != "cpu":
            return self.f_theta.after_first_layer(split_first_layer(self.e_f, self.w_f, [v, M, I])).squeeze(-1)
        # on CPU the input term is added at its non-zero columns only (the photoreceptors: ~13 %)
        z = split_first_layer(self.e_f, self.w_f[:, :2], [v, M], relu=False)
        columns = torch.nonzero(I.abs().sum(0)).squeeze(1)
        z.index_add_(1, columns, I[:, columns].unsqueeze(-1) * self.w_f[:, 2])
        return self.f_theta.after_first_layer(z.relu_()).squeeze(-1)
