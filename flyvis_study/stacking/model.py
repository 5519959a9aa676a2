"""R replicas of ``FlyVisGNN`` on one graph, evaluated together with batched matrix products.

Replica r keeps its own parameters (its own ``FlyVisGNN``: W_r, a_r, g_phi_r, f_theta_r); each
step stacks them along a leading replica dimension (``StackedParameters.of``, a
``torch.stack`` per tensor, whose backward hands each replica its own gradient slice), so
the maths of replica r is exactly that of ``FlyVisGNN`` (module docstring of ``model.gnn``):

    h_r[s, j]  = g_phi_r(v_r[s, j], a_r[j])^2
    M_r[s, i]  = sum_{e: j -> i} W_r[e] h_r[s, j]
    pred_r[s, i] = f_theta_r(v_r[s, i], a_r[i], M_r[s, i], I_r[s, i])

An MLP of the stack, first weight W1 (R, H, n_in) split into the embedding columns U (R, H, d)
and the scalar-feature columns Wf (R, H, K), hidden weights (R, H, H), output (R, 1, H):

    z[r, s, n, :] = sum_k X_k[r, s, n] Wf[r, :, k] + (U_r a_r[n] + b1_r)       (R, S, N, H)
    h <- relu(h W_r^T + b_r)  per hidden layer                (torch.baddbmm over r)
    out[r, s, n] = h[r, s, n, :] . w_out_r + b_out_r                             (R, S, N)

with the embedding term computed once per neuron (R, N, H) and broadcast over the S row
blocks; rows from ``n_live`` on use a detached embedding (the regulariser rows, as in
``train.loss``). The synaptic sum is ``model.message_passing.SynapticSum`` on h (R, S, N)
with per-replica weights (R, 1, E).
Differentiated by autograd (one batched product per layer for all replicas).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from flyvis_study.model.gnn import FlyVisGNN
from flyvis_study.model.message_passing import SynapticSum


@dataclass
class StackedMLP:
    """One MLP of R replicas: weights[i] (R, out_i, in_i), biases[i] (R, out_i)."""

    weights: list[torch.Tensor]
    biases: list[torch.Tensor]

    def parameters(self) -> list[torch.Tensor]:
        return [x for pair in zip(self.weights, self.biases) for x in pair]

    def forward_split(self, features: list[torch.Tensor], columns: tuple[int, ...], embedding: torch.Tensor,
                      embedding_at: int, n_live: int | None = None) -> torch.Tensor:
        """The MLP on the input [X_0 .. , a_n, ..] without building it: features X_k (R, S, N)
        at first-layer ``columns``; embedding (R, N, d) at columns embedding_at .. +d; rows
        s >= ``n_live`` see a detached embedding. Returns (R, S, N)."""
        W1, b1 = self.weights[0], self.biases[0]
        R, S, N = features[0].shape
        d = embedding.shape[-1]
        U = W1[:, :, embedding_at:embedding_at + d]  # (R, H, d)
        term = torch.baddbmm(b1.unsqueeze(1), embedding, U.transpose(1, 2))  # (R, N, H)
        Wf = torch.stack([W1[:, :, c] for c in columns], -1)  # (R, H, K)

        def first_layer(xs: list[torch.Tensor], term: torch.Tensor) -> torch.Tensor:  # (R, S', N, H)
            if len(xs) == 1:
                return torch.addcmul(term.unsqueeze(1), xs[0].unsqueeze(-1), Wf[:, :, 0].view(R, 1, 1, -1))
            s = xs[0].shape[1]
            X = torch.stack(xs, -1).reshape(R, s * N, len(xs))
            return torch.bmm(X, Wf.transpose(1, 2)).view(R, s, N, -1) + term.unsqueeze(1)

        n_live = S if n_live is None else n_live
        if n_live < S:  # rows from n_live on: detached embedding (split before the product: no slice backward)
            dead = torch.baddbmm(b1.unsqueeze(1), embedding.detach(), U.transpose(1, 2))
            z = torch.cat([first_layer([f[:, :n_live] for f in features], term),
                           first_layer([f[:, n_live:] for f in features], dead)], 1)
        else:
            z = first_layer(features, term)
        h = torch.relu(z).reshape(R, S * N, -1)
        for W, b in zip(self.weights[1:-1], self.biases[1:-1]):
            h = torch.relu(torch.baddbmm(b.unsqueeze(1), h, W.transpose(1, 2)))
        out = torch.baddbmm(self.biases[-1].unsqueeze(1), h, self.weights[-1].transpose(1, 2))
        return out.view(R, S, N)


@dataclass
class StackedParameters:
    """The parameters of R replicas stacked along dim 0: W (R, E), embedding (R, N, d), the two MLPs."""

    W: torch.Tensor
    embedding: torch.Tensor
    g_phi: StackedMLP
    f_theta: StackedMLP

    @staticmethod
    def of(models: list[FlyVisGNN]) -> StackedParameters:
        """Stack the models' own parameters (differentiable: gradients reach each model)."""
        def mlp(name: str) -> StackedMLP:
            layers = [getattr(m, name).layers for m in models]
            return StackedMLP([torch.stack([ls[i].weight for ls in layers]) for i in range(len(layers[0]))],
                              [torch.stack([ls[i].bias for ls in layers]) for i in range(len(layers[0]))])
        return StackedParameters(torch.stack([m.W for m in models]), torch.stack([m.embedding for m in models]),
                                 mlp("g_phi"), mlp("f_theta"))


class StackedGNN:
    """The forward maths of R ``FlyVisGNN`` replicas sharing one graph (module docstring).

    ``models``: the replicas (same neurons, edges and ``ModelConfig`` shapes; checked).
    """

    def __init__(self, models: list[FlyVisGNN]):
        check_stackable(models)
        self.models = models
        self.config = models[0].config
        self.edge_index = models[0].edge_index
        self.synaptic_sum = SynapticSum()

    def parameters(self) -> StackedParameters:
        return StackedParameters.of(self.models)

    def edge_activation(self, p: StackedParameters, v: torch.Tensor, n_live: int | None = None) -> torch.Tensor:
        """h = g_phi(v, a)^2 (or g_phi if ``g_phi_positive`` is off); v (R, S, N) -> (R, S, N)."""
        g = p.g_phi.forward_split([v], (0,), p.embedding, 1, n_live)
        return g * g if self.config.g_phi_positive else g

    def aggregate(self, p: StackedParameters, h: torch.Tensor) -> torch.Tensor:
        """M_r = sum over edges j -> i of W_r[e] h_r[:, j]; h (R, S, N) -> (R, S, N)."""
        return self.synaptic_sum(h, self.edge_index, p.W.unsqueeze(1))

    def update(self, p: StackedParameters, v: torch.Tensor, M: torch.Tensor, I: torch.Tensor) -> torch.Tensor:
        """f_theta(v, a, M, I) per neuron; each (R, S, N) -> (R, S, N)."""
        d = p.embedding.shape[-1]
        return p.f_theta.forward_split([v, M, I], (0, d + 1, d + 2), p.embedding, 1)

    def forward(self, v: torch.Tensor, I: torch.Tensor) -> torch.Tensor:
        """Predicted dv/dt of every replica, v and I (R, B, N) -> (R, B, N)."""
        p = self.parameters()
        return self.update(p, v, self.aggregate(p, self.edge_activation(p, v)), I)

    __call__ = forward


def check_stackable(models: list[FlyVisGNN]) -> None:
    """Raise ValueError unless the models share neurons, edges and parameter shapes."""
    if not models:
        raise ValueError("a stack needs at least one replica")
    first = models[0]
    shapes = [tuple(p.shape) for p in first.parameters()]
    for m in models[1:]:
        if m.n_neurons != first.n_neurons or not torch.equal(m.edge_index, first.edge_index):
            raise ValueError("stacked replicas must share one graph (same extent: neurons and edges)")
        if [tuple(p.shape) for p in m.parameters()] != shapes or m.config.g_phi_positive != first.config.g_phi_positive:
            raise ValueError("stacked replicas must have the same model shape (hidden_dim, n_layers, embedding_dim)")
