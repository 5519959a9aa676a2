import numpy as np
import pytest
import torch

from flyvis_study.world.connectome import cached_connectome
from flyvis_study.world.ground_truth import instantiate
from flyvis_study.world.simulator import Simulator
from flyvis_study.world.synthetic import synthetic_ground_truth

# a module-scoped fixture is built once per process: under `pytest -n N --dist loadgroup` the
# module stays on one worker, so it is built once
pytestmark = pytest.mark.xdist_group(__name__)


@pytest.fixture(scope="module")
def world():
    c = cached_connectome(1)
    gt = instantiate(synthetic_ground_truth(c, seed=0), c)
    return c, gt


def dense_derivative(c, gt, v, e):
    W = np.zeros((c.n_neurons, c.n_neurons))
    np.add.at(W, (c.edge_tgt, c.edge_src), gt.W)
    return (-v + gt.V_rest + W @ np.maximum(v, 0) + e) / gt.tau


def test_euler_noise_and_stored_derivative(world):
    c, gt = world
    sigma = 0.05
    sim = Simulator(c, gt, dt=0.02, noise_level=sigma)
    rng = np.random.default_rng(0)
    hexals = rng.random((400, c.n_columns)).astype(np.float32)
    steps = sim.run(hexals, sim.initial_state(), torch.Generator().manual_seed(0), chunk=128)
    v, y = map(np.concatenate, zip(*[(a, b) for _, a, b in steps]))
    e = np.zeros((400, c.n_neurons))
    e[:, c.input_nodes] = hexals[:, c.node_column[c.input_nodes]]
    # y_t is the clean derivative at the stored (noisy) state
    for t in (0, 1, 200, 399):
        np.testing.assert_allclose(y[t], dense_derivative(c, gt, v[t].astype(np.float64), e[t]), rtol=2e-4, atol=2e-3)
    # v_{t+1} = v_t + dt y_t + sigma xi (noise not scaled by dt or tau)
    xi = (v[1:] - v[:-1] - 0.02 * y[:-1]) / sigma
    assert xi.std() == pytest.approx(1.0, abs=0.03)
    assert abs(xi.mean()) < 0.02


def test_initial_state_is_deterministic_steady_state(world):
    c, gt = world
    sim = Simulator(c, gt)
    v0 = sim.initial_state().numpy()
    np.testing.assert_array_equal(v0, sim.initial_state().numpy())
    # 100 clamped-tau Euler steps from V_rest under a uniform 0.5 input, by hand
    v = gt.V_rest.astype(np.float64)
    e = np.zeros(c.n_neurons)
    e[c.input_nodes] = 0.5
    tau = np.maximum(gt.tau, 0.02)
    for _ in range(100):
        v = v + 0.02 * dense_derivative(c, gt, v, e) * gt.tau / tau
    np.testing.assert_allclose(v0, v, rtol=1e-4, atol=1e-4)


def test_noise_depends_on_generator_only(world):
    c, gt = world
    sim = Simulator(c, gt)
    hexals = np.full((50, c.n_columns), 0.5, np.float32)
    run = lambda seed: np.concatenate([v for _, v, _ in sim.run(hexals, sim.initial_state(),  # noqa: E731
                                                                torch.Generator().manual_seed(seed))])
    np.testing.assert_array_equal(run(1), run(1))
    assert not np.array_equal(run(1), run(2))


def test_target_csr_is_the_synaptic_sum():
    """A = target_csr(src, tgt, W): A @ h == sum over edges j -> i of W_e h_j (duplicate edges
    summed), int32 indices on the CPU."""
    import numpy as np
    import torch

    from flyvis_study.fast.csr import target_csr

    rng = np.random.default_rng(0)
    src, tgt = rng.integers(0, 30, 200), rng.integers(0, 30, 200)
    w = rng.standard_normal(200).astype(np.float32)
    A = target_csr(src, tgt, w, 30)
    assert A.crow_indices().dtype == torch.int32 and A.col_indices().dtype == torch.int32
    h = rng.standard_normal(30).astype(np.float32)
    expected = np.zeros(30)
    np.add.at(expected, tgt, w * h[src])
    np.testing.assert_allclose(torch.mv(A, torch.from_numpy(h)).numpy(), expected, rtol=1e-5, atol=1e-5)
