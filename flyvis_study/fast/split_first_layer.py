"""The first Linear + ReLU on split input as one autograd function (hand-written backward).

z[r, n] = sum_k X_k[r, n] w_k + (U a_n + b); see ``model.gnn``.
"""

from __future__ import annotations

import torch

from flyvis_study.fast.fused_ops import split_first_layer


class _SplitFirstLayer(torch.autograd.Function):
    """h = relu(z), z[r, n, :] = sum_k X_k[r, n] Wf[:, k] + U a[n] + b; the first Linear + ReLU.

    Inputs: a (N, d), weight (H, n_in) with U, Wf its columns per ``layout``
    (``fused_ops.FirstLayerLayout``), b (H,), n_live (int), X_0..X_{K-1} (R, N). Output
    (R, N, H). The embedding a receives gradient only from the first ``n_live`` row blocks
    (rows after them use a detached embedding, as the regularisers require); weight, b and
    the X_k receive the gradient of every row. The weight's gradient is assembled here in
    one ``cat`` (few kernels: what a CUDA-graph replay pays for is their number).
    """

    @staticmethod
    def forward(ctx, a, weight, b, layout, n_live, *features):
        U, Wf = layout.split(weight)
        z = split_first_layer(torch.addmm(b, a, U.t()), Wf, features)
        ctx.n_live, ctx.layout = n_live, layout
        ctx.save_for_backward(a, U, Wf, z, *features)
        return z

    @staticmethod
    def backward(ctx, grad_h):
        a, U, Wf, h, *features = ctx.saved_tensors
        need = ctx.needs_input_grad
        g = torch.ops.aten.threshold_backward(grad_h, h, 0.0)  # (R, N, H)
        g_rows = g.reshape(-1, g.shape[-1])
        g_live = g[: ctx.n_live].sum(0)  # (N, H)
        g_emb = g_live + g[ctx.n_live:].sum(0) if ctx.n_live < g.shape[0] else g_live
        grad_a = g_live @ U if need[0] else None
        grad_weight = None
        if need[1]:
            if len(features) == 1:
                grad_Wf = (features[0].reshape(-1) @ g_rows).unsqueeze(1)
            else:
                grad_Wf = g_rows.t() @ torch.stack([f.reshape(-1) for f in features], 1)
            grad_weight = ctx.layout.join(g_emb.t() @ a, grad_Wf)
        grad_b = g_emb.sum(0) if need[2] else None
        grad_X = [g @ Wf[:, k] if need[5 + k] else None for k in range(len(features))]
        return (grad_a, grad_weight, grad_b, None, None, *grad_X)
