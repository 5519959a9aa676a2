"""torch_geometric for real: the connectome as a PyG Data, the GNN's aggregation and the
per-edge oracle as MessagePassing layers, equal to the plain gather / scatter-add maths."""

import numpy as np
import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.nn import MessagePassing

from flyvis_study.config import ModelConfig
from flyvis_study.model.gnn import FlyVisGNN
from flyvis_study.model.message_passing import PerEdgeSynapses, SynapticSum
from flyvis_study.world.connectome import cached_connectome


def test_connectome_to_pyg_has_the_connectome_counts():
    c = cached_connectome(8)
    counts = c.counts()
    W = np.linspace(-1, 1, c.n_edges, dtype=np.float32)
    g = c.to_pyg(W=W)
    assert isinstance(g, Data)
    assert (g.num_nodes, g.num_edges) == (13741, 434112) == (counts["n_neurons"], counts["n_edges"])
    assert int((g.edge_index[0] == g.edge_index[1]).sum()) == counts["n_self_loops"] == 3724
    assert int(g.input_mask.sum()) == counts["n_input_neurons"] == 1736
    assert int(g.edge_type.max()) + 1 == counts["n_edge_types"] == 604
    assert int(g.edge_group.max()) + 1 == counts["n_offset_groups"] == 2355
    assert int((g.edge_sign > 0).sum()) == counts["n_positive_sign_edges"]
    assert len(g.cell_types) == int(g.node_type.max()) + 1 == 65
    assert g.pos.shape == (13741, 2) and g.edge_attr.shape == (434112, 1)
    np.testing.assert_array_equal(g.edge_attr[:, 0].numpy(), W)
    np.testing.assert_array_equal(g.edge_index[0].numpy(), c.edge_src)  # source j, target i
    g.validate(raise_on_error=True)
    assert "edge_attr" not in c.to_pyg()
    with pytest.raises(ValueError, match="one weight per edge"):
        c.to_pyg(W=W[:10])


def test_dataset_to_pyg_carries_the_ground_truth(tiny_dataset):
    g = tiny_dataset.to_pyg()
    np.testing.assert_array_equal(g.edge_attr[:, 0].numpy(), tiny_dataset.ground_truth.W)
    np.testing.assert_array_equal(g.V_rest.numpy(), tiny_dataset.ground_truth.V_rest)
    assert g.tau.shape == (tiny_dataset.connectome.n_neurons,)


def _plain_sum(h, src, tgt, w):
    """Today's form before the PyG layer: gather at sources, index_add at targets."""
    return torch.zeros_like(h).index_add_(-1, tgt, h.index_select(-1, src) * w)


def test_synaptic_sum_layer_equals_gather_scatter_in_float64():
    gen = torch.Generator().manual_seed(0)
    n, e = 30, 200
    src, tgt = torch.randint(0, n, (e,), generator=gen), torch.randint(0, n, (e,), generator=gen)
    h1 = torch.randn(3, n, generator=gen, dtype=torch.float64, requires_grad=True)
    w1 = torch.randn(e, generator=gen, dtype=torch.float64, requires_grad=True)
    h2, w2 = h1.detach().clone().requires_grad_(), w1.detach().clone().requires_grad_()
    layer = SynapticSum()
    assert isinstance(layer, MessagePassing) and layer.aggr == "add"
    out = layer(h1, torch.stack([src, tgt]), w1)
    ref = _plain_sum(h2, src, tgt, w2)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-13)
    y = torch.randn(3, n, generator=gen, dtype=torch.float64)
    ((out - y) ** 2).sum().backward()
    ((ref - y) ** 2).sum().backward()
    torch.testing.assert_close(h1.grad, h2.grad, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(w1.grad, w2.grad, rtol=1e-12, atol=1e-13)
    one = layer(h1[0].detach(), torch.stack([src, tgt]), w1.detach())  # a single frame (N,)
    torch.testing.assert_close(one, ref[0].detach(), rtol=1e-12, atol=1e-13)


def test_model_forward_and_gradients_equal_the_plain_aggregation_in_float64():
    c = cached_connectome(1)
    gen = torch.Generator().manual_seed(2)
    model = FlyVisGNN(c.n_neurons, torch.from_numpy(c.edge_src), torch.from_numpy(c.edge_tgt),
                      ModelConfig(w_init_mode="randn"), generator=gen).double()
    assert isinstance(model.synaptic_sum, MessagePassing)
    v = torch.randn(2, c.n_neurons, generator=gen, dtype=torch.float64)
    I = torch.rand(2, c.n_neurons, generator=gen, dtype=torch.float64)
    grads, outs = [], []
    for plain in (False, True):
        model.zero_grad()
        h = model.edge_activation(v, model.embedding)
        M = _plain_sum(h, model.edge_src, model.edge_tgt, model.W) if plain else model.aggregate(h)
        out = model.update(v, model.embedding, M, I)
        out.square().sum().backward()
        outs.append(out.detach())
        grads.append({k: p.grad.clone() for k, p in model.named_parameters()})
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-12, atol=1e-12)
    for k in grads[0]:
        torch.testing.assert_close(grads[0][k], grads[1][k], rtol=1e-10, atol=1e-12, msg=k)


def test_per_edge_oracle_layer_evaluates_the_edge_mlp_on_every_edge():
    gen = torch.Generator().manual_seed(1)
    n, e = 10, 50
    src, tgt = torch.randint(0, n, (e,), generator=gen), torch.randint(0, n, (e,), generator=gen)
    rows = []

    def edge_mlp(x):  # records the rows it sees: B x E, one per edge
        rows.append(x.shape)
        return x[..., :1] * 2 + x[..., 1:2]

    x = torch.randn(2, n, 3, generator=gen, dtype=torch.float64)
    w = torch.randn(e, generator=gen, dtype=torch.float64)
    layer = PerEdgeSynapses(edge_mlp)
    assert isinstance(layer, MessagePassing)
    out = layer(x, torch.stack([src, tgt]), w)
    assert rows == [torch.Size([2, e, 3])]
    h = (x[..., 0] * 2 + x[..., 1]) ** 2
    torch.testing.assert_close(out, _plain_sum(h, src, tgt, w), rtol=1e-12, atol=1e-13)
