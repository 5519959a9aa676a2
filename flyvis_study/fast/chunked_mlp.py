"""The MLP on split input for training on a CPU: forward and a cache-sized, chunked backward.

Same function as ``MLP.forward_split`` (first layer z1[r, n] = sum_k X_k[r, n] Wf[:, k] +
U a_n + b1, then Linear + ReLU layers, then a Linear to one output) and the same gradients,
with the embedding gradient taken from the first ``n_live`` row blocks only.

Why: on a CPU the autograd backward of the MLP is bound by memory traffic, not by
arithmetic: each (R*N, hidden) gradient is written by one kernel and read back by the next
(ReLU backward, weight gradient, bias sum, block sums, feature-weight gradient), a dozen
passes through DRAM. Here the activations are stored neuron-major, (N, R, hidden), and the
backward walks over chunks of neurons: for each chunk every layer's gradient is computed
while the chunk's rows (a few thousand) are in cache, and the weight gradients are
accumulated. Each stored activation is then read once. The gain over autograd's backward of
the same forward (``training.mlp_backward: autograd``) is measured in docs/benchmarks.md.
On a GPU the whole row set is one chunk (the GPU's caches are not the point there): the
hand-written backward then saves kernels and takes the bias gradients as GEMVs
(``fused_ops.column_sums``).

Shapes: features X_k (R, N); a (N, d); first weight W1 (H, n_in) holding U (H, d) and Wf
(H, K) at the columns ``layout`` gives (``fused_ops.FirstLayerLayout``); b1 (H,); hidden
weights (H, H) and biases (H,); output weight (1, H), bias (1,). Output (R, N).
"""

from __future__ import annotations

import torch

from flyvis_study.fast.fused_ops import column_sums, linear_relu, split_first_layer

ROWS_PER_CHUNK = 4096  # rows (neurons x row blocks) per backward chunk (the best of 2,048-16,384 measured)


class ChunkedMLP(torch.autograd.Function):
    """apply(n_live, rows_per_chunk, layout, a, W1, b1, n_hidden, *hidden_wb, w_out, b_out, *features)."""

    @staticmethod
    def forward(ctx, n_live: int, rows_per_chunk: int, layout, a, W1, b1, n_hidden: int, *rest):
        U, Wf = layout.split(W1)
        hidden = [(rest[2 * i], rest[2 * i + 1]) for i in range(n_hidden)]
        w_out, b_out = rest[2 * n_hidden], rest[2 * n_hidden + 1]
        features = rest[2 * n_hidden + 2:]
        R, N = features[0].shape
        columns = [f.t().contiguous() for f in features]  # (N, R) each, neuron-major
        z = split_first_layer(torch.addmm(b1, a, U.t()).unsqueeze(1), Wf, columns)  # (N, R, H)
        F = torch.stack(columns, -1)  # (N, R, K) for the backward
        acts = [z.view(N * R, -1)]
        for W, b in hidden:  # autograd is off inside forward: the fused oneDNN op on CPU float32
            acts.append(linear_relu(acts[-1], W, b))
        out = torch.addmv(b_out, acts[-1], w_out[0]).view(N, R).t().contiguous()
        ctx.n_live, ctx.rows_per_chunk, ctx.n_hidden, ctx.shape = n_live, rows_per_chunk, n_hidden, (R, N)
        ctx.layout = layout
        ctx.save_for_backward(a, U, Wf, w_out, F, *[W for W, _ in hidden], *acts)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        n_hidden = ctx.n_hidden
        a, U, Wf, w_out, F, *rest = ctx.saved_tensors
        Ws, acts = rest[:n_hidden], rest[n_hidden:]
        R, N = ctx.shape
        n_live = ctx.n_live
        need = ctx.needs_input_grad
        K = F.shape[-1]
        need_X = [need[9 + 2 * n_hidden + k] for k in range(K)]
        go = grad_out.t().contiguous()  # (N, R)
        H = U.shape[0]
        g_live = torch.empty(N, H, dtype=go.dtype, device=go.device)
        g_emb = torch.empty_like(g_live) if n_live < R else g_live
        g_Wf = torch.zeros_like(Wf)
        g_W = [torch.zeros_like(W) for W in Ws]
        g_b = [torch.zeros(W.shape[0], dtype=go.dtype, device=go.device) for W in Ws]
        g_wout = torch.zeros_like(w_out[0])
        g_bout = go.new_zeros(1)
        g_F = torch.empty_like(F) if any(need_X) else None
        per = max(1, ctx.rows_per_chunk // R)  # neurons per chunk
        for n0 in range(0, N, per):
            n1 = min(N, n0 + per)
            rows = slice(n0 * R, n1 * R)
            go_c = go[n0:n1].reshape(-1)
            top = acts[-1][rows]
            g_wout.addmv_(top.t(), go_c)
            g_bout += go_c.sum()
            g = torch.ops.aten.threshold_backward(torch.outer(go_c, w_out[0]), top, 0.0)
            for i in range(n_hidden - 1, -1, -1):
                below = acts[i][rows]
                g_W[i].addmm_(g.t(), below)
                g_b[i] += column_sums(g)
                g = torch.ops.aten.threshold_backward(g @ Ws[i], below, 0.0)
            g3 = g.view(n1 - n0, R, H)  # gradient at the first layer's pre-activation
            torch.sum(g3[:, :n_live], 1, out=g_live[n0:n1])
            if n_live < R:
                torch.add(g_live[n0:n1], g3[:, n_live:].sum(1), out=g_emb[n0:n1])
            F_c = F[n0:n1].view(-1, K)
            g_Wf.addmm_(g.t(), F_c)
            if g_F is not None:
                torch.mm(g, Wf, out=g_F[n0:n1].view(-1, K))
        grad_a = g_live @ U if need[3] else None
        grad_W1 = ctx.layout.join(g_emb.t() @ a, g_Wf) if need[4] else None
        grad_b1 = column_sums(g_emb) if need[5] else None
        hidden_grads = [x for pair in zip(g_W, g_b) for x in pair]
        grad_X = [g_F[..., k].t() if need_X[k] else None for k in range(K)]
        return (None, None, None, grad_a, grad_W1, grad_b1, None, *hidden_grads, g_wout.unsqueeze(0), g_bout,
                *grad_X)
