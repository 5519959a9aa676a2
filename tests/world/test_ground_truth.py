import numpy as np
import pytest
import torch
from conftest import reference_file

from flyvis_study.world.connectome import cached_connectome
from flyvis_study.world.ground_truth import instantiate, load_flyvis_checkpoint, spectral_abscissa, w_statistics
from flyvis_study.world.simulator import Simulator
from flyvis_study.world.stimuli import build_clip_library, build_streams
from flyvis_study.world.synthetic import balanced_gains, synthetic_ground_truth, type_depth


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


@pytest.mark.slow
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


def test_synthetic_calibrated_to_stable_abscissa():
    c = cached_connectome(2)
    params = synthetic_ground_truth(c, seed=0)
    gt = instantiate(params, c)
    abscissa = spectral_abscissa(gt.weight_matrix(c))
    assert abscissa <= 0.85 + 1e-3
    assert abscissa == pytest.approx(params.info["abscissa"], abs=1e-4)
    assert params.info["raw_abscissa"] > 0.85  # the raw draw would be unstable
    # signs, n_syn and V_rest/tau of the draw are kept; only strengths are tuned
    np.testing.assert_array_equal(np.sign(gt.W[gt.W != 0]), np.sign(instantiate(
        params.__class__(**{**params.__dict__, "edge_type_strength": np.ones_like(params.edge_type_strength)}),
        c).W[gt.W != 0]))


def test_type_depth_is_breadth_first_from_inputs():
    keys = np.array([[0, 1], [1, 2], [2, 1], [0, 3], [3, 4]])
    usable = np.array([True, True, True, False, True])
    depth = type_depth(keys, usable, np.array([0]), 5)
    np.testing.assert_array_equal(depth[:3], [0, 1, 2])
    assert not np.isfinite(depth[3]) and not np.isfinite(depth[4])


def test_balanced_gains_hit_target_std_and_mean():
    rng = np.random.default_rng(0)
    common = rng.normal(size=(2000, 1))
    U_exc = 1.0 + 0.3 * common + 0.05 * rng.normal(size=(2000, 6))
    U_inh = -0.5 - 0.1 * rng.normal(size=(2000, 6))
    kappa, gain = balanced_gains(U_exc, U_inh, target_sd=0.1, target_mean=0.0)
    x = gain * (U_exc + kappa * U_inh)
    assert np.median(x.std(0)) == pytest.approx(0.1, rel=0.05)
    assert abs(np.median(x.mean(0))) < 0.05  # balanced: U_exc mean 1.0 cancelled by kappa ~ 2
    assert 1.5 < kappa < 2.6
    assert balanced_gains(np.zeros((10, 2)), np.zeros((10, 2)), 0.1, 0.0) is None


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_default_dynamics_bounded_and_every_type_active(seed):
    """Noise-free simulation under the default natural stimulus: bounded, all types vary,
    every non-input type is above threshold most of the time, so almost every weight is
    identifiable (its source's ReLU output varies)."""
    c = cached_connectome(2)
    params = synthetic_ground_truth(c, seed=seed)
    assert params.info["silent_types"] == [] and params.info["inactive_types"] == []
    gt = instantiate(params, c)
    sim = Simulator(c, gt, noise_level=0.0)
    lib = build_clip_library(c.columns, n_base_clips=6)
    hexals = build_streams(lib, 1500, simulation_seed=0).train
    v = np.concatenate([v for _, v, _ in sim.run(hexals, sim.initial_state(), torch.Generator())])
    assert np.isfinite(v).all() and np.abs(v).max() < 50
    type_std = np.array([v[:, c.node_type == k].std(0).max() for k in range(65)])
    assert (type_std > 1e-4).all(), np.array(c.cell_types)[type_std <= 1e-4]
    assert np.median(type_std) > 0.05  # the visual signal reaches the whole network
    never_active = (v > 0).mean(0) < 0.01
    assert never_active[c.edge_src].mean() < 0.03  # v3 (global rescale only): 13 %
