import numpy as np
import pytest
import torch

from conftest import reference_file
from flyvis_study.ground_truth import instantiate, load_flyvis_checkpoint, spectral_abscissa, w_statistics
from flyvis_study.synthetic import synthetic_ground_truth
from flyvis_study.lattice import cached_connectome
from flyvis_study.simulator import Simulator
from flyvis_study.stimuli import build_clip_library, build_streams


def test_checkpoint_reproduces_reference_W_statistics(expected_counts):
    params = load_flyvis_checkpoint(reference_file("flyvis_flow_0000_000.chkpt"))
    c = cached_connectome(8)
    stats = w_statistics(instantiate(params, c).W)
    exp = expected_counts["W_with_flyvis_000"]
    assert stats["n_exactly_zero"] == exp["n_exactly_zero"]
    assert stats["n_positive"] == exp["n_positive"] and stats["n_negative"] == exp["n_negative"]
    for key in ("min", "max", "mean", "std"):
        assert stats[key] == pytest.approx(exp[key], abs=1e-3), key
    np.testing.assert_allclose(stats["abs_percentiles_25_50_75_95_99"],
                               exp["abs_percentiles_25_50_75_95_99"], atol=1e-4)


def test_checkpoint_drives_small_extents():
    params = load_flyvis_checkpoint(reference_file("flyvis_flow_0000_000.chkpt"))
    c1 = cached_connectome(1)
    gt = instantiate(params, c1)
    assert gt.W.shape == (c1.n_edges,) and gt.V_rest.shape == (c1.n_neurons,)
    assert gt.V_rest[0] == pytest.approx(0.444229, abs=1e-5)  # R1's resting potential


def test_unreadable_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.chkpt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="ground_truth.checkpoint"):
        load_flyvis_checkpoint(bad)
    with pytest.raises(FileNotFoundError, match="ground_truth.checkpoint"):
        load_flyvis_checkpoint(tmp_path / "missing.chkpt")


def test_synthetic_marginals_and_determinism():
    c = cached_connectome(2)
    a, b = synthetic_ground_truth(c, seed=0), synthetic_ground_truth(c, seed=0)
    np.testing.assert_array_equal(a.edge_type_strength, b.edge_type_strength)
    other = synthetic_ground_truth(c, seed=1)
    assert not np.array_equal(a.V_rest_type, other.V_rest_type)
    assert a.V_rest_type.min() >= 0 and a.V_rest_type.max() <= 0.8
    assert abs(a.V_rest_type.mean() - 0.51) < 0.08
    fast = (a.tau_type >= 0.0194) & (a.tau_type <= 0.0200)
    assert fast.sum() == 51
    assert a.tau_type[~fast].min() >= 0.037 and a.tau_type[~fast].max() <= 0.32
    zero = np.mean(a.edge_type_strength == 0)
    assert 0.01 < zero < 0.10
    assert len(a.edge_type_strength) == 604


def test_synthetic_rescaled_to_target_abscissa():
    c = cached_connectome(2)
    params = synthetic_ground_truth(c, seed=0)
    gt = instantiate(params, c)
    assert spectral_abscissa(gt.weight_matrix(c)) == pytest.approx(0.85, rel=1e-3)
    assert params.info["raw_abscissa"] > 0.85  # the raw draw would be less stable


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_default_dynamics_bounded_and_every_type_active(seed):
    """Noise-free simulation under the default natural stimulus: bounded, all types vary."""
    c = cached_connectome(2)
    params = synthetic_ground_truth(c, seed=seed)
    assert params.info["silent_types"] == []
    gt = instantiate(params, c)
    sim = Simulator(c, gt, noise_level=0.0)
    lib = build_clip_library(c.columns, n_base_clips=6)
    hexals = build_streams(lib, 1500, simulation_seed=0).train
    v = np.concatenate([v for _, v, _ in sim.run(hexals, sim.initial_state(), torch.Generator())])
    assert np.isfinite(v).all() and np.abs(v).max() < 50
    type_std = np.array([v[:, c.node_type == k].std(0).max() for k in range(65)])
    assert (type_std > 1e-4).all(), np.array(c.cell_types)[type_std <= 1e-4]
