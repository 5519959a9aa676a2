"""The GNN ``flyvis_A``: per-neuron edge MLP, per-edge weights, update MLP.

For an edge e = (j -> i) (j presynaptic source, i postsynaptic target):

    h_j   = g_phi(v_j, a_j)^2                         (edge MLP on the *source* only)
    m_e   = W_e * h_j
    M_i   = sum_{e: tgt(e) = i} m_e
    dv_i/dt_hat = f_theta(v_i, a_i, M_i, I_i)         (input order v, a, M, I)

Because g_phi depends only on the source neuron it is evaluated once per neuron (N rows)
and h is gathered along the edges: identical maths to the reference's per-edge evaluation
(E rows, ~31.6x more at extent 8), which ``flyvis_study.naive`` keeps as the parity oracle.

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
(the plain path on concatenated inputs) stays the reference form used by ``naive.py``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .chunked_mlp import ROWS_PER_CHUNK, ChunkedMLP
from .config import ModelConfig
from .fused_ops import FirstLayerLayout, linear_relu, split_first_layer


# How training differentiates the MLPs, per device type: "chunked" = ``ChunkedMLP`` (one function,
# hand-written backward; on a CPU over cache-sized chunks, on a GPU over all rows at once), or
# "autograd" = ``_SplitFirstLayer`` + autograd through the hidden layers. Same maths (tested).
MLP_BACKWARD = {"cpu": "chunked", "cuda": "chunked"}


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


class MLP(nn.Module):
    """``n_layers`` Linear layers in -> hidden -> ... -> out, ReLU between, linear output.

    Initialisation: first layer PyTorch's default (U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for
    weight and bias); later layers weights N(0, 0.1^2), biases 0. Drawn from ``generator``.
    """

    def __init__(self, n_in: int, hidden: int, n_out: int, n_layers: int,
                 generator: torch.Generator | None = None):
        super().__init__()
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

        The plain path on a concatenated input: the reference form (``naive.py``, and the
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
        backward) where ``MLP_BACKWARD`` says so; else ``_SplitFirstLayer`` then
        ``after_first_layer`` under autograd.
        """
        first = self.layers[0]
        used, layout = self.split_layout(features, embedding_at, embedding.shape[-1])
        n_live = used[0].shape[0] if n_live is None else n_live
        last = self.layers[-1]
        device = embedding.device.type
        if torch.is_grad_enabled() and MLP_BACKWARD.get(device) == "chunked" and last.out_features == 1:
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
        """Hidden Linear+ReLU layers (``fused_ops.linear_relu``) and the output layer; h (..., hidden) -> (..., n_out)."""
        lead = h.shape[:-1]
        h = h.reshape(-1, h.shape[-1])
        for layer in self.layers[1:-1]:
            h = linear_relu(h, layer.weight, layer.bias)
        last = self.layers[-1]
        if last.out_features == 1:  # matrix-vector product: its backward is an outer product, not a K=1 GEMM
            return torch.addmv(last.bias, h, last.weight.view(-1)).reshape(*lead, 1)  # a view: no select backward
        return torch.addmm(last.bias, h, last.weight.t()).reshape(*lead, last.out_features)


class FlyVisGNN(nn.Module):
    """Message-passing model of the optic lobe's dynamics (see module docstring).

    Args:
        n_neurons: N.
        edge_src, edge_tgt: (E,) long tensors, presynaptic j and postsynaptic i.
        config: hidden size, layers, embedding size, W initialisation.
        generator: torch.Generator for every random initial value (training.seed).
    """

    def __init__(self, n_neurons: int, edge_src: torch.Tensor, edge_tgt: torch.Tensor,
                 config: ModelConfig = ModelConfig(), generator: torch.Generator | None = None):
        super().__init__()
        d = config.embedding_dim
        self.config = config
        self.n_neurons = n_neurons
        self.g_phi = MLP(1 + d, config.hidden_dim, 1, config.n_layers, generator)
        self.f_theta = MLP(1 + d + 2, config.hidden_dim, 1, config.n_layers, generator)
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

    def edge_activation(self, v: torch.Tensor, a: torch.Tensor, n_live: int | None = None) -> torch.Tensor:
        """h = g_phi(v, a)^2 (or g_phi itself if ``g_phi_positive`` is off).

        v (R, N) or (N,); a (N, d). Only the first ``n_live`` rows pass gradient to ``a``
        (default all). Returns v's shape.
        """
        rows = v.reshape(-1, v.shape[-1])
        g = self.g_phi.forward_split([rows], a, 1, n_live).reshape(v.shape)
        return g * g if self.config.g_phi_positive else g

    def aggregate(self, h: torch.Tensor) -> torch.Tensor:
        """M_i = sum over edges j -> i of W_e h_j; h (B, N) -> M (B, N)."""
        messages = h.index_select(-1, self.edge_src) * self.W
        out = torch.zeros_like(h)
        return out.index_add_(-1, self.edge_tgt, messages)

    def update(self, v: torch.Tensor, a: torch.Tensor, M: torch.Tensor | None, I: torch.Tensor | None) -> torch.Tensor:
        """f_theta(v, a, M, I) per neuron; v, M, I (B, N) -> (B, N); ``None`` for M or I means 0."""
        rows = lambda x: None if x is None else x.reshape(-1, x.shape[-1])  # noqa: E731
        return self.f_theta.forward_split([rows(v), rows(M), rows(I)], a, 1).reshape(v.shape)

    def forward(self, v: torch.Tensor, I: torch.Tensor) -> torch.Tensor:
        """Predicted dv/dt for states v (B, N) and inputs I (B, N)."""
        a = self.embedding
        M = self.aggregate(self.edge_activation(v, a))
        return self.update(v, a, M, I)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The four optimiser groups: W, g_phi, f_theta, embedding."""
        return {"W": [self.W], "g_phi": list(self.g_phi.parameters()),
                "f_theta": list(self.f_theta.parameters()), "embedding": [self.embedding]}


class FrozenPredictor:
    """dv/dt_hat of a model with fixed parameters (evaluation): ``FlyVisGNN.forward``'s maths
    without autograd, with what does not depend on the state computed once: the embedding
    terms U a_n + b of both first layers (N x hidden each), their feature columns, and W as
    a CSR matrix (rows = targets; ``sparse.target_csr``). Those are snapshots while the hidden
    layers are read from the model, so build it when training is over and drop it after use.

    ``predictor(v, I)``: v, I (B, N) -> (B, N), equal to ``model(v, I)`` to float rounding.
    """

    @torch.no_grad()
    def __init__(self, model: "FlyVisGNN"):
        from .sparse import target_csr

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
