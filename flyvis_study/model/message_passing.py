"""The GNN's synaptic sum as torch_geometric ``MessagePassing`` layers.

For an edge e = (j -> i), ``edge_index[:, e] = (j, i)`` (PyG's source-to-target flow):

    SynapticSum:     M_i = sum_{e: j -> i} w_e h_j         message(h_j, w) = h_j * w_e
    PerEdgeSynapses: M_i = sum_{e: j -> i} w_e g(x_j)^2    message(x_j, w) = w_e * g(x_j)^2

``SynapticSum`` is the model's aggregation: h = g_phi(v, a)^2 is evaluated once per neuron
before ``propagate``, which gathers h along the edges and adds the messages at their targets
(aggr "add"). Shapes: h (B, N) with the node dimension last (``node_dim=-1``), w (E,),
M (B, N).

``PerEdgeSynapses`` is the reference's per-edge form, kept as the parity oracle
(``model.naive``): the node features x = [v, a] (B, N, 1 + d) are gathered to the edges and
the edge MLP g is evaluated on all B x E rows (``node_dim=-2``); M (B, N).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch_geometric.nn import MessagePassing


class SynapticSum(MessagePassing):
    """M = sum over incoming edges of w_e h_j; h (B, N) or (N,), w (E,) -> h's shape."""

    def __init__(self):
        super().__init__(aggr="add", node_dim=-1)

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.propagate(edge_index, h=h, w=w)

    def message(self, h_j: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return h_j * w


class PerEdgeSynapses(MessagePassing):
    """M = sum over incoming edges of w_e g(x_j)^2 (or g(x_j) when not ``positive``), g per edge row.

    x (B, N, F) node features, w (E,) -> (B, N).
    """

    def __init__(self, edge_mlp: Callable[[torch.Tensor], torch.Tensor], positive: bool = True):
        super().__init__(aggr="add", node_dim=-2)
        self.edge_mlp = edge_mlp
        self.positive = positive

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.propagate(edge_index, x=x, w=w).squeeze(-1)

    def message(self, x_j: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        g = self.edge_mlp(x_j)  # (B, E, 1)
        return (g * g if self.positive else g) * w.unsqueeze(-1)
