"""Training targets: the clean derivative and the observed finite difference (world.training_data)."""

import numpy as np
import pytest
import torch

from flyvis_study.world.connectome import cached_connectome
from flyvis_study.world.ground_truth import instantiate
from flyvis_study.world.simulator import Simulator
from flyvis_study.world.synthetic import synthetic_ground_truth
from flyvis_study.world.training_data import TrainingData

# a module-scoped fixture is built once per process: under `pytest -n N --dist loadgroup` the
# module stays on one worker, so it is built once
pytestmark = pytest.mark.xdist_group(__name__)

DT = 0.02
EPS32 = float(np.finfo(np.float32).eps)


@pytest.fixture(scope="module")
def world():
    c = cached_connectome(1)
    return c, instantiate(synthetic_ground_truth(c, seed=0), c)


class SimulatedSplit:
    """The arrays ``TrainingData`` reads from a dataset, simulated here in one stream of several
    clips (the stimulus jumps at each clip boundary, the state does not)."""

    def __init__(self, world, sigma: float, n_frames: int = 300, chunk: int = 64):
        c, gt = world
        sim = Simulator(c, gt, dt=DT, noise_level=sigma)
        rng = np.random.default_rng(1)
        clips = np.repeat(rng.random((6, c.n_columns)), n_frames // 6, axis=0).astype(np.float32)
        steps = sim.run(clips, sim.initial_state(), torch.Generator().manual_seed(5), chunk=chunk)
        v, y = map(np.concatenate, zip(*[(a, b) for _, a, b in steps]))
        gen = torch.Generator().manual_seed(5)  # the simulator's noise, drawn again chunk by chunk
        self.xi = np.concatenate([torch.randn((min(chunk, n_frames - t0), c.n_neurons), generator=gen).numpy()
                                  for t0 in range(0, n_frames, chunk)])
        self.connectome, self.path = c, "simulated"
        self.arrays = {"train_v": v, "train_y": y, "train_stimulus": clips,
                       "train_finite": np.ones(n_frames, bool),
                       "train_v_mean": v.mean(0), "train_v_std": v.std(0, ddof=1)}

    def array(self, name: str) -> np.ndarray:
        return self.arrays[name]


def euler_rounding(v: np.ndarray, y: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Bound on |(v_{t+1} - v_t)/dt - y_t| from float32 rounding alone: the simulator rounds
    dt*y_t and v_t + dt*y_t (1/2 ulp each), the target rounds the difference and the division
    (1/2 ulp each): eps32 (|v_{t+1}| + |v_t| + dt |y_t|) / dt + eps32 |y_t|, with a factor 2 of room."""
    a, b, d = np.abs(v[idx + 1]), np.abs(v[idx]), np.abs(y[idx])
    return 2 * (EPS32 * (a + b + DT * d) / DT + EPS32 * d)


def test_observed_target_equals_clean_at_zero_noise(world):
    split = SimulatedSplit(world, sigma=0.0)
    clean = TrainingData(split, torch.device("cpu"))
    observed = TrainingData(split, torch.device("cpu"), derivative_target="observed", dt=DT)
    idx = np.arange(0, 290, 7)  # crosses every clip boundary (every 50 frames)
    v_c, I_c, y_c = clean.rows(idx)
    v_o, I_o, y_o = observed.rows(idx)
    assert torch.equal(v_c, v_o) and torch.equal(I_c, I_o)
    err = np.abs(y_o.numpy() - y_c.numpy())
    v, y = split.arrays["train_v"], split.arrays["train_y"]
    assert (err <= euler_rounding(v, y, idx)).all(), err.max()
    assert err.max() > 0  # the two targets are computed differently


def test_observed_target_differs_by_the_noise_over_dt(world):
    sigma = 0.05
    split = SimulatedSplit(world, sigma=sigma)
    clean = TrainingData(split, torch.device("cpu"))
    observed = TrainingData(split, torch.device("cpu"), derivative_target="observed", dt=DT)
    idx = np.arange(0, 295)
    _, _, y_c = clean.rows(idx)
    _, _, y_o = observed.rows(idx)
    v, y = split.arrays["train_v"], split.arrays["train_y"]
    # observed - clean = sigma xi_t / dt, up to float32 rounding (the noise added adds 1/2 ulp of v_{t+1})
    diff = (y_o - y_c).numpy().astype(np.float64)
    expected = sigma * split.xi[idx] / DT
    assert (np.abs(diff - expected) <= euler_rounding(v, y, idx) + 2 * EPS32 * np.abs(expected)).all()
    assert np.abs(diff).mean() > 100 * np.abs(diff - expected).max()


def test_observed_target_skips_frames_without_a_finite_successor(world):
    split = SimulatedSplit(world, sigma=0.05)
    split.arrays["train_finite"][100] = False
    clean = TrainingData(split, torch.device("cpu"))
    observed = TrainingData(split, torch.device("cpu"), derivative_target="observed", dt=DT)
    assert 100 not in set(clean.frames.tolist()) and 99 in set(clean.frames.tolist())
    assert 99 not in set(observed.frames.tolist()) and 100 not in set(observed.frames.tolist())
    assert len(observed.frames) == len(clean.frames) - 1


def test_observed_target_needs_dt(world):
    with pytest.raises(ValueError, match="dt: required"):
        TrainingData(SimulatedSplit(world, sigma=0.0, n_frames=60), torch.device("cpu"), derivative_target="observed")
