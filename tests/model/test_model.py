"""The per-neuron GNN equals the naive per-edge evaluation (forward and every gradient)."""

import pytest
import torch

from flyvis_study.config import ModelConfig
from flyvis_study.model.gnn import FlyVisGNN
from flyvis_study.model.naive import naive_forward


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
    from flyvis_study.world.connectome import cached_connectome

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
    from flyvis_study.model.mlp import MLP

    mlp = MLP(5, 80, 1, 3, torch.Generator().manual_seed(0))
    x = torch.randn(3, 257, 5, generator=torch.Generator().manual_seed(1))
    with_grad = mlp(x)
    with torch.no_grad():
        fused = mlp(x)
    assert with_grad.requires_grad and not fused.requires_grad
    assert fused.shape == with_grad.shape == (3, 257, 1)
    torch.testing.assert_close(fused, with_grad.detach(), rtol=1e-6, atol=1e-6)


def assert_equals_plain_mlp(mlp, out, a, v, M, I, n_live, g):
    """out == MLP.forward on [v, a, M, I] with a detached after n_live row blocks, value and
    gradients (embedding, features, every MLP parameter)."""
    R, N = v.shape
    a_rows = torch.cat([a.expand(n_live, N, a.shape[1]), a.detach().expand(R - n_live, N, a.shape[1])])
    plain = mlp(torch.cat([v.unsqueeze(-1), a_rows, M.unsqueeze(-1), I.unsqueeze(-1)], -1)).squeeze(-1)
    torch.testing.assert_close(out, plain, rtol=1e-12, atol=1e-12)
    weights = torch.randn(R, N, generator=g, dtype=torch.float64)
    inputs = [a, v, M, I, *mlp.parameters()]
    for x, y in zip(torch.autograd.grad((out * weights).sum(), inputs, retain_graph=True),
                    torch.autograd.grad((plain * weights).sum(), inputs)):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


def split_inputs(g, R=4, N=7):
    v, M, I = (torch.randn(R, N, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
    a = torch.randn(N, 2, generator=g, dtype=torch.float64, requires_grad=True)
    return a, v, M, I


@pytest.mark.parametrize("chunked_backward", [False, True])
def test_split_first_layer_equals_plain_mlp_and_detaches_embedding_after_n_live(chunked_backward):
    """forward_split([v, M, I], a, at=1, n_live) == MLP([v, a, M, I]) with a detached on rows >= n_live
    (autograd through _SplitFirstLayer, as on a GPU, and the CPU's ChunkedMLP); None features are
    zeros; the hand-written backward of _SplitFirstLayer passes torch's gradcheck."""
    from flyvis_study.fast.fused_ops import FirstLayerLayout
    from flyvis_study.fast.split_first_layer import _SplitFirstLayer
    from flyvis_study.model.mlp import MLP

    g = torch.Generator().manual_seed(2)
    mlp = MLP(5, 16, 1, 3, g, backward="chunked" if chunked_backward else "autograd").double()
    a, v, M, I = split_inputs(g)
    R, N = v.shape
    assert_equals_plain_mlp(mlp, mlp.forward_split([v, M, I], a, 1, n_live=2).squeeze(-1), a, v, M, I, 2, g)
    with torch.no_grad():
        zero = torch.zeros(R, N, dtype=torch.float64)
        torch.testing.assert_close(mlp.forward_split([v, None, None], a, 1), mlp.forward_split([v, zero, zero], a, 1))
    first = mlp.layers[0]
    weight = first.weight.detach().clone().requires_grad_(True)
    b = first.bias.detach().clone().requires_grad_(True)
    # the true derivative (every row live; n_live < R is checked against the plain path above);
    # features v and M at columns 0 and 3, embedding at 1..2, column 4 unused (zero gradient)
    layout = FirstLayerLayout(1, 2, (0, 3), 5)
    assert torch.autograd.gradcheck(lambda a, w, b, x0, x1: _SplitFirstLayer.apply(a, w, b, layout, R, x0, x1),
                                    (a, weight, b, v, M))
    with pytest.raises(ValueError, match="at least one"):
        mlp.forward_split([None, None, None], a, 1)



FAULTS_OF_MODEL_STEPS = """
import resource, sys, torch
from flyvis_study.fast.allocator import keep_freed_memory
from flyvis_study.model.gnn import FlyVisGNN
if sys.argv[1] == "keep":
    assert keep_freed_memory() and keep_freed_memory()  # idempotent
torch.set_num_threads(1)
g = torch.Generator().manual_seed(0)
n, e = 10000, 40000
model = FlyVisGNN(n, torch.randint(0, n, (e,), generator=g), torch.randint(0, n, (e,), generator=g), generator=g)
v, I = torch.randn(2, n, generator=g), torch.randn(2, n, generator=g)
for k in range(22):
    if k == 2:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    model(v, I).square().sum().backward()  # activations of 6.4 MB
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_keep_freed_memory_stops_page_faults_of_training_steps():
    """Two fresh processes, the same 20 forward/backward passes of the model: glibc's default
    faults the activations' pages in again and again (measured 40,000-51,000 faults); with
    keep_freed_memory they are reused after the heap has grown (measured 3,100-5,500)."""
    import platform
    import subprocess
    import sys

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc only")
    faults = {mode: int(subprocess.run([sys.executable, "-c", FAULTS_OF_MODEL_STEPS, mode], check=True,
                                       capture_output=True, text=True).stdout)
              for mode in ("default", "keep")}
    assert faults["default"] > 10 * 1563  # 1,563 pages = one activation tensor: the cost removed
    assert faults["keep"] < faults["default"] / 4, faults


@pytest.mark.parametrize("batch", [1, 3])
def test_frozen_predictor_equals_model(batch):
    """Evaluation's FrozenPredictor (cached embedding terms, int32 CSR W, fused oneDNN
    Linear+ReLU, input term at non-zero columns only) == model(v, I) == the naive oracle."""
    from flyvis_study.fast.frozen_predictor import FrozenPredictor
    from flyvis_study.world.connectome import cached_connectome

    c = cached_connectome(1)
    g = torch.Generator().manual_seed(4)
    model = FlyVisGNN(c.n_neurons, torch.from_numpy(c.edge_src), torch.from_numpy(c.edge_tgt),
                      ModelConfig(w_init_mode="randn"), generator=g)
    with torch.no_grad():
        model.embedding.normal_(generator=g)
    predict = FrozenPredictor(model)
    v = torch.randn(batch, c.n_neurons, generator=g)
    photoreceptors = torch.zeros(batch, c.n_neurons)
    photoreceptors[:, torch.from_numpy(c.input_nodes).long()] = torch.rand(batch, len(c.input_nodes), generator=g)
    for I in (photoreceptors, torch.rand(batch, c.n_neurons, generator=g), torch.zeros(batch, c.n_neurons)):
        with torch.no_grad():
            fast, ref, naive = predict(v, I), model(v, I), naive_forward(model, v, I)
        assert fast.shape == (batch, c.n_neurons)
        torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(fast, naive, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        model.W.mul_(2.0)  # a snapshot: later changes to the model are not seen
        assert not torch.allclose(predict(v, I), model(v, I))


def test_fused_linear_relu_equals_addmm_relu():
    from flyvis_study.fast.fused_ops import fused_linear_relu_available, linear_relu
    from flyvis_study.model.mlp import MLP

    layer = MLP(3, 80, 1, 3, torch.Generator().manual_seed(0)).layers[1]
    h = torch.rand(1000, 80, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        fused = linear_relu(h, layer.weight, layer.bias)
        strided = linear_relu(h[::2], layer.weight, layer.bias)
        assert fused_linear_relu_available(h) == (torch.backends.mkldnn.is_available()
                                                 and hasattr(torch.ops.mkldnn, "_linear_pointwise"))
    plain = torch.relu(h @ layer.weight.t() + layer.bias)
    torch.testing.assert_close(fused, plain.detach(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(strided, plain[::2].detach(), rtol=1e-6, atol=1e-6)
    assert linear_relu(h, layer.weight, layer.bias).requires_grad  # with autograd: the differentiable path


@pytest.mark.parametrize("n_layers", [3, 4])
def test_chunked_mlp_backward_equals_autograd_of_the_plain_mlp(n_layers):
    """Training's ChunkedMLP (neuron-major activations, backward over chunks of neurons that do
    not divide N) == autograd through MLP.forward on concatenated input with the embedding
    detached after n_live row blocks; and torch's gradcheck of its hand-written backward."""
    from flyvis_study.fast.chunked_mlp import ChunkedMLP
    from flyvis_study.fast.fused_ops import FirstLayerLayout
    from flyvis_study.model.mlp import MLP

    g = torch.Generator().manual_seed(5)
    mlp = MLP(5, 8, 1, n_layers, g).double()
    a, v, M, I = split_inputs(g, R=3, N=11)
    R = v.shape[0]
    first, last = mlp.layers[0], mlp.layers[-1]
    hidden = [p for layer in mlp.layers[1:-1] for p in (layer.weight, layer.bias)]

    def chunked(a, v, M, I, n_live=2, rows=4, weight=first.weight):  # 4 rows per chunk: 1 neuron x 3 blocks
        features = [v, M, I] if I is not None else [v, M]
        layout = FirstLayerLayout(1, 2, (0, 3, 4)[:len(features)], 5)
        return ChunkedMLP.apply(n_live, rows, layout, a, weight, first.bias, n_layers - 2, *hidden,
                                last.weight, last.bias, *features)

    assert_equals_plain_mlp(mlp, chunked(a, v, M, I), a, v, M, I, 2, g)
    assert torch.autograd.gradcheck(lambda a, v, M: chunked(a, v, M, I.detach(), n_live=R, rows=7), (a, v, M))
    weight = first.weight.detach().clone().requires_grad_(True)  # column 4 unused: zero gradient
    assert torch.autograd.gradcheck(lambda w, a: chunked(a, v.detach(), M.detach(), None, n_live=R, weight=w),
                                    (weight, a))
