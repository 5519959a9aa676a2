"""The two readouts of tau and V_rest (evaluation.recovery): the corrected readout is gauge-invariant."""

import numpy as np
import pytest
import torch

from flyvis_study.evaluation.recovery import recover_parameters, silent_message
from flyvis_study.model.gnn import FlyVisGNN
from flyvis_study.train.loop import build_model
from flyvis_study.world.training_data import TrainingData

# a module-scoped fixture is built once per process: under `pytest -n N --dist loadgroup` the
# module stays on one worker, so it is built once
pytestmark = pytest.mark.xdist_group(__name__)

EPS64 = float(np.finfo(np.float64).eps)


class GaugedGNN(FlyVisGNN):
    """The same network in another message gauge: h'_j = h_j / c + d(a_j) (a per-neuron message
    offset injected into g_phi, a function of the neuron's embedding so that it follows any
    chunk of neurons) and f'(v, a, M, I) = f(v, a, c (M - o), I) with o = the aggregate of
    d, so f_theta absorbs it: every prediction equals the base model's."""

    def __init__(self, base: FlyVisGNN, u: torch.Tensor, c: float):
        super().__init__(base.n_neurons, base.edge_src, base.edge_tgt, base.config)
        self.to(base.W.dtype)  # before loading: a float64 state loaded into float32 tensors is rounded
        self.load_state_dict(base.state_dict())
        self.u, self.c = u, c
        with torch.no_grad():
            self.o = super().aggregate(self.offset(self.embedding)[None])[0]

    def offset(self, a: torch.Tensor) -> torch.Tensor:
        """d(a) = 0.5 + sigmoid(a . u), (n,) for embeddings a (n, d)."""
        return 0.5 + torch.sigmoid(a.detach() @ self.u)

    def edge_activation(self, v, a, n_live=None):
        return super().edge_activation(v, a, n_live) / self.c + self.offset(a)

    def update(self, v, a, M, I):
        o = self.o[torch.cdist(a.detach(), self.embedding.detach()).argmin(1)]  # the rows' neurons (any chunk)
        M = -o.expand_as(v) if M is None else M - o
        return super().update(v, a, self.c * M, I)


@pytest.fixture(scope="module")
def world(tiny_config, tiny_dataset):
    data = TrainingData(tiny_dataset, torch.device("cpu"), torch.float64)
    base = build_model(tiny_config, tiny_dataset, torch.device("cpu")).double()
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        base.embedding.normal_(generator=gen)
        base.W.mul_(20.0)  # messages large enough that an offset matters
    u = torch.randn(base.embedding.shape[1], generator=gen, dtype=torch.float64)
    v, I, _ = data.rows(np.arange(10, 18))
    return data, base, GaugedGNN(base, u, c=2.5), v, I


def test_gauged_model_predicts_the_same(world):
    data, base, gauged, v, I = world
    with torch.no_grad():
        torch.testing.assert_close(gauged(v, I), base(v, I), rtol=1e-12, atol=1e-12)


def test_corrected_readout_reads_through_the_message_offset(world):
    """Oracle: the corrected readout of the gauged model equals the base model's (float64:
    the offset is added and taken off again, a few ulps of the message, 1e-9 is ~1e6 eps64 of
    room for f_theta's amplification); the plain readout moves by the absorbed offset."""
    data, base, gauged, v, I = world
    a = recover_parameters(base, data.stats, v, I, n_points=200)
    b = recover_parameters(gauged, data.stats, v, I, n_points=200)
    np.testing.assert_allclose(b.V_rest_hat_corrected, a.V_rest_hat_corrected, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(b.tau_hat_corrected, a.tau_hat_corrected, rtol=1e-9, atol=1e-9)
    shift = np.abs(b.V_rest_hat - a.V_rest_hat)
    has_input = np.bincount(base.edge_tgt.numpy(), minlength=base.n_neurons) > 0
    assert np.median(shift[has_input]) > 0.05  # the plain readout does not see through it (V_rest sd ~0.16)
    assert np.allclose(shift[~has_input], 0, atol=1e-9)  # no presynaptic neuron, no offset


def test_silent_message_is_the_message_at_zero_presynaptic_voltage(world):
    data, base, gauged, v, I = world
    h0 = base.edge_activation(torch.zeros(1, base.n_neurons, dtype=torch.float64), base.embedding)
    expected = torch.zeros(base.n_neurons, dtype=torch.float64).index_add_(
        0, base.edge_tgt, base.W * h0[0, base.edge_src])
    torch.testing.assert_close(silent_message(base), expected.detach())
    torch.testing.assert_close(silent_message(gauged), (expected / 2.5 + gauged.o).detach())
