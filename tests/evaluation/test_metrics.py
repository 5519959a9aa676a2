"""Metric definitions and oracle recoveries."""

import numpy as np
import pytest
import torch
from torch import nn

from flyvis_study.evaluation.clustering import cluster_metrics, node_features
from flyvis_study.evaluation.prediction import per_neuron_pearson_r2
from flyvis_study.evaluation.recovery import (
    connectivity_metrics,
    r2_affine,
    recover_parameters,
    tau_metrics,
    vrest_metrics,
)
from flyvis_study.evaluation.trajectory import trajectory_summary, trend
from flyvis_study.model.gnn import FlyVisGNN
from flyvis_study.world.connectome import cached_connectome
from flyvis_study.world.ground_truth import instantiate
from flyvis_study.world.synthetic import synthetic_ground_truth
from flyvis_study.world.training_data import ActivityStats

# a module-scoped fixture is built once per process: under `pytest -n N --dist loadgroup` the
# module stays on one worker, so it is built once
pytestmark = pytest.mark.xdist_group(__name__)


def test_r2_equals_squared_pearson_and_ignores_affine_maps():
    rng = np.random.default_rng(0)
    for _ in range(5):
        x = rng.normal(size=300)
        y = 0.7 * x + rng.normal(size=300)
        r2, slope = r2_affine(x, y)
        assert r2 == pytest.approx(np.corrcoef(x, y)[0, 1] ** 2, rel=1e-10)
        assert r2_affine(x, 3 * y - 2)[0] == pytest.approx(r2)
        assert slope == pytest.approx(np.polyfit(x, y, 1)[0])
    assert r2_affine(x, np.ones_like(x)) == (0.0, 0.0)


class ConcatenatedInput(nn.Module):
    """A hand-written MLP stand-in: ``forward_split`` builds the concatenated input
    [X_0 .. a .. X_k] (None = zeros) and calls ``forward`` on it, as MLP.forward would see it."""

    def forward_split(self, features, embedding, embedding_at, n_live=None):
        ref = next(f for f in features if f is not None)
        cols = [(torch.zeros_like(ref) if f is None else f).unsqueeze(-1) for f in features]
        a = embedding.expand(*ref.shape, embedding.shape[-1])
        return self(torch.cat(cols[:embedding_at] + [a] + cols[embedding_at:], -1))


class SqrtRelu(ConcatenatedInput):
    """g(v, a) = sqrt(ReLU(v)) so that g^2 is exactly ReLU."""

    def forward(self, x):
        return torch.sqrt(torch.relu(x[..., :1]))


class TrueLeak(ConcatenatedInput):
    """f(v, a, M, I) = (-v + V_rest[type] + M + I) / tau[type], type read from a[..., 0]."""

    def __init__(self, V_rest_type, tau_type):
        super().__init__()
        self.V = torch.as_tensor(V_rest_type, dtype=torch.float32)
        self.tau = torch.as_tensor(tau_type, dtype=torch.float32)

    def forward(self, x):
        k = x[..., 1].round().long().clamp(0, len(self.V) - 1)
        v, M, I = x[..., 0], x[..., 3], x[..., 4]
        return ((-v + self.V[k] + M + I) / self.tau[k]).unsqueeze(-1)


@pytest.fixture(scope="module")
def oracle():
    c = cached_connectome(2)
    params = synthetic_ground_truth(c, seed=0)
    gt = instantiate(params, c)
    model = FlyVisGNN(c.n_neurons, torch.from_numpy(c.edge_src), torch.from_numpy(c.edge_tgt))
    model.g_phi = SqrtRelu()
    model.f_theta = TrueLeak(params.V_rest_type, params.tau_type)
    with torch.no_grad():
        model.W.copy_(torch.from_numpy(gt.W))
        model.embedding[:, 0] = torch.from_numpy(c.node_type.astype(np.float32))
        model.embedding[:, 1] = 0.0
    rng = np.random.default_rng(0)
    stats = ActivityStats(mean=rng.uniform(0.2, 1.0, c.n_neurons).astype(np.float32),
                          std=rng.uniform(0.1, 0.3, c.n_neurons).astype(np.float32))
    v = torch.from_numpy(rng.uniform(0, 1, (8, c.n_neurons)).astype(np.float32))
    I = torch.zeros_like(v)
    return c, gt, model, stats, v, I


def test_oracle_model_recovers_everything(oracle):
    c, gt, model, stats, v, I = oracle
    rec = recover_parameters(model, stats, v, I, n_points=200)
    conn = connectivity_metrics(gt.W, rec.W_corrected, model.W.detach().numpy())
    assert conn["connectivity_R2"] > 0.999 and conn["connectivity_slope"] == pytest.approx(1, abs=1e-2)
    assert conn["connectivity_n_edges"] == c.n_edges
    assert tau_metrics(gt.tau, rec.tau_hat)["tau_R2"] > 0.999
    vr = vrest_metrics(gt.V_rest, rec.V_rest_hat, c.node_type)
    assert vr["V_rest_R2"] > 0.999 and vr["V_rest_R2_type_median"] > 0.999
    feats = node_features(model.embedding.detach().numpy(), rec, c.edge_src, c.edge_tgt, c.n_neurons)
    assert feats.shape == (c.n_neurons, 8)
    cl = cluster_metrics(feats, c.node_type, n_components=100)
    assert cl["cluster_accuracy"] > 0.8 and cl["cluster_NMI"] > 0.8


def test_shuffled_W_scores_zero(oracle):
    c, gt, model, stats, v, I = oracle
    rec = recover_parameters(model, stats, v, I, n_points=200)
    shuffled = np.random.default_rng(1).permutation(rec.W_corrected)
    assert connectivity_metrics(gt.W, shuffled, shuffled)["connectivity_R2"] < 0.01


def test_outlier_edges_are_dropped():
    w = np.linspace(-1, 1, 100)
    w_star = w.copy()
    w_star[:3] = 50.0
    m = connectivity_metrics(w, w_star, w_star)
    assert m["connectivity_n_edges"] == 97 and m["connectivity_R2"] == pytest.approx(1.0)


def test_per_neuron_test_metrics():
    rng = np.random.default_rng(0)
    true = rng.normal(size=(200, 5))
    r, r2 = per_neuron_pearson_r2(true, true)
    np.testing.assert_allclose(r, 1)
    np.testing.assert_allclose(r2, 1)
    r, r2 = per_neuron_pearson_r2(2 * true, true)  # perfectly correlated, wrong scale: no refit
    np.testing.assert_allclose(r, 1)
    assert (r2 < 0.1).all()
    const = np.ones((200, 1))
    r, r2 = per_neuron_pearson_r2(const, const)
    assert np.isnan(r).all()


def test_trend_and_trajectory_summary():
    assert trend([0.1, 0.5, 0.8, 0.9]) == "rising"
    assert trend([0.1, 0.9, 0.9, 0.6]) == "decaying"
    assert trend([0.5, 0.9, 0.9, 0.9]) == "stable"
    rows = [{"epoch": 0, "iteration": i, "connectivity_r2": c, "vrest_r2": 0.1, "tau_r2": 0.2,
             "phase": "joint" if i < 3 else "V_rest"} for i, c in enumerate([0.2, 0.6, 0.9, 0.8])]
    s = trajectory_summary(rows)
    assert s["conn"]["peak"] == 0.9 and s["conn"]["peak_iteration"] == 2 and s["conn"]["peak_phase"] == "joint"
    assert s["conn"]["final"] == 0.8 and s["conn"]["trend"] == "decaying"


def test_predict_frames_threaded_equals_sequential_and_restores_threads():
    """The one-step test's frames split over Python threads (CPU) give bitwise the predictions of
    one sequential loop, and torch's intra-op thread count is restored."""
    from flyvis_study.evaluation.prediction import predict_frames
    from flyvis_study.fast.frozen_predictor import FrozenPredictor

    c = cached_connectome(1)
    g = torch.Generator().manual_seed(0)
    model = FlyVisGNN(c.n_neurons, torch.from_numpy(c.edge_src), torch.from_numpy(c.edge_tgt), generator=g)
    predict = FrozenPredictor(model)
    v = torch.randn(37, c.n_neurons, generator=g).numpy()
    I = torch.rand(37, c.n_neurons, generator=g).numpy()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        threaded = predict_frames(predict, v, I, 1, torch.device("cpu"))
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        sequential = predict_frames(predict, v, I, 1, torch.device("cpu"))
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(threaded, sequential)
    with torch.no_grad():
        expected = model(torch.from_numpy(v), torch.from_numpy(I)).numpy()
    np.testing.assert_allclose(threaded, expected, rtol=1e-5, atol=1e-5)


def test_every_metric_is_typed_once_and_its_run_file_variable_says_what_it_is(tmp_path):
    """The catalogue covers every evaluated name (a new name without a meaning fails here), and a
    run file's variables carry the R2 definition, readout, units and meaning."""
    from flyvis_study.evaluation.names import EVALUATION_SECTIONS, METRIC_NAMES, METRICS, definition_of, readout_of
    from flyvis_study.study.blocks import BLOCKS, block_parameters
    from flyvis_study.study.record import run_dataset
    from flyvis_study.study.spec import grid_specs

    assert list(METRICS) == list(METRIC_NAMES) and len(set(METRIC_NAMES)) == len(METRIC_NAMES)
    for name, m in METRICS.items():
        assert m.name == name and name in EVALUATION_SECTIONS[m.section] and m.units and m.meaning
        assert m.definition == (definition_of(name) or m.definition) and m.definition in ("affine", "identity",
                                                                                          "field", "")
        assert m.readout == (readout_of(name) if m.section in ("tau", "V_rest") else "")
    assert (METRICS["V_rest_R2_field_corrected"].definition, METRICS["V_rest_R2_field_corrected"].readout) == (
        "field", "corrected")
    assert METRICS["connectivity_n_edges"].units == "edges" and METRICS["cluster_ARI"].definition == ""
    spec = grid_specs(0, BLOCKS[0].cells(block_parameters(0)), 1, preset="tiny")[0]
    ds = run_dataset(spec, {"V_rest_R2_corrected": 0.3, "log_rows": [], "ground_truth": "flyvis flow/0000/000",
                            "dataset": "/cache/datasets/0123456789abcdef0123"}, [], 1)
    assert (ds.attrs["ground_truth_source"], ds.attrs["dataset_key"]) == ("flyvis flow/0000/000",
                                                                          "0123456789abcdef0123")
    assert ds["V_rest_R2_corrected"].attrs["r2_definition"] == "affine"
    assert ds["V_rest_R2_corrected"].attrs["readout"] == "corrected" and ds["tau_R2"].attrs["units"] == "1"
    assert ds.attrs["file_kind"] == "run"
