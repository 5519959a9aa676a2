"""The per-neuron GNN equals the naive per-edge evaluation (forward and every gradient)."""

import pytest
import torch

from flyvis_study.config import ModelConfig
from flyvis_study.model import FlyVisGNN
from flyvis_study.naive import naive_forward


def random_model(n=12, e=40, seed=0, **cfg):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, n, (e,), generator=g)
    tgt = torch.randint(0, n, (e,), generator=g)
    model = FlyVisGNN(n, src, tgt, ModelConfig(**{"w_init_mode": "randn", **cfg}), generator=g).double()
    with torch.no_grad():
        model.embedding.normal_(generator=g)
    return model, g


@pytest.mark.parametrize("positive", [True, False])
def test_forward_and_gradients_match_naive(positive):
    model, g = random_model(g_phi_positive=positive)
    v = torch.randn(3, 12, generator=g, dtype=torch.float64)
    I = torch.rand(3, 12, generator=g, dtype=torch.float64)
    y = torch.randn(3, 12, generator=g, dtype=torch.float64)
    fast = model(v, I)
    slow = naive_forward(model, v, I)
    torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-12)
    grads = []
    for out in (fast, slow):
        model.zero_grad()
        torch.linalg.vector_norm(out - y).backward(retain_graph=True)
        grads.append({k: p.grad.clone() for k, p in model.named_parameters()})
    assert set(grads[0]) >= {"W", "embedding", "g_phi.layers.0.weight", "f_theta.layers.2.bias"}
    for k in grads[0]:
        torch.testing.assert_close(grads[0][k], grads[1][k], rtol=1e-5, atol=1e-9, msg=k)


def test_float32_parity_on_connectome_graph():
    from flyvis_study.lattice import cached_connectome

    c = cached_connectome(1)
    g = torch.Generator().manual_seed(1)
    model = FlyVisGNN(c.n_neurons, torch.from_numpy(c.edge_src), torch.from_numpy(c.edge_tgt), generator=g)
    v = torch.randn(2, c.n_neurons, generator=g)
    I = torch.rand(2, c.n_neurons, generator=g)
    fast, slow = model(v, I), naive_forward(model, v, I)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)


def test_initialisation_rules():
    fresh = FlyVisGNN(50, torch.zeros(400, dtype=torch.long), torch.zeros(400, dtype=torch.long),
                      generator=torch.Generator().manual_seed(0))
    assert torch.all(fresh.embedding == 1)
    assert fresh.W.std().item() == pytest.approx(1 / 400**0.5, rel=0.2)
    for mlp in (fresh.g_phi, fresh.f_theta):
        for layer in mlp.layers[1:]:
            assert torch.all(layer.bias == 0)
            # N(0, 0.1^2): 6,400 hidden weights pin the std to ~1 %; the 80 output weights to ~8 %
            tolerance = 0.05 if layer.weight.numel() > 1000 else 0.3
            assert layer.weight.std().item() == pytest.approx(0.1, rel=tolerance)
        bound = 1 / mlp.layers[0].in_features ** 0.5
        assert mlp.layers[0].weight.abs().max() <= bound
    zeros = FlyVisGNN(5, torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long),
                      ModelConfig(w_init_mode="zeros"))
    assert torch.all(zeros.W == 0)
    a = FlyVisGNN(5, torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long),
                  generator=torch.Generator().manual_seed(3))
    b = FlyVisGNN(5, torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long),
                  generator=torch.Generator().manual_seed(3))
    for (k, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), k


def test_mlp_inference_path_equals_autograd_path():
    """Evaluation (no autograd) takes the fused addmm + in-place ReLU path: same numbers."""
    from flyvis_study.model import MLP

    mlp = MLP(5, 80, 1, 3, torch.Generator().manual_seed(0))
    x = torch.randn(3, 257, 5, generator=torch.Generator().manual_seed(1))
    with_grad = mlp(x)
    with torch.no_grad():
        fused = mlp(x)
    assert with_grad.requires_grad and not fused.requires_grad
    assert fused.shape == with_grad.shape == (3, 257, 1)
    torch.testing.assert_close(fused, with_grad.detach(), rtol=1e-6, atol=1e-6)
