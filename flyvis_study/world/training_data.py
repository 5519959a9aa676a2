"""Training arrays of a dataset on a device, and the activity statistics of its voltages."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from flyvis_study.world.dataset import Dataset
from flyvis_study.world.stimuli import photoreceptor_input


class TrainingData:
    """Training arrays of a dataset: memory-mapped on CPU, resident on a GPU.

    ``rows(idx)`` returns (v, I, y), each (B, N) on the device in ``dtype`` (float32; float64
    for equivalence tests), where I is the photoreceptor input built from the stored hexal
    stimulus and y the training target (``derivative_target``):

    - ``clean``: the simulator's derivative f(v_t, e_t) at the stored noisy state (privileged:
      no real recording gives it);
    - ``observed``: the forward finite difference (v_{t+1} - v_t) / dt of the stored voltages,
      = f(v_t, e_t) + sigma xi_t / dt (``world.simulator``). The simulator integrates each
      split in one stream (a clip boundary changes the stimulus, not the state), so the
      difference is valid at clip boundaries; frames whose successor is not finite are not
      drawn.

    Args:
        dataset: the simulated dataset.
        device: where the rows are returned (resident there on a GPU).
        dtype: the rows' dtype.
        derivative_target: "clean" or "observed" (``training.derivative_target``).
        dt: the Euler step (``simulation.dt``); required for the observed target.
    """

    def __init__(self, dataset: Dataset, device: torch.device, dtype: torch.dtype = torch.float32,
                 derivative_target: str = "clean", dt: float | None = None):
        if derivative_target not in ("clean", "observed"):
            raise ValueError(f"derivative_target: 'clean' or 'observed' (got {derivative_target!r})")
        if derivative_target == "observed" and not dt:
            raise ValueError("dt: required for derivative_target 'observed'")
        self.device, self.dtype = device, dtype
        self.derivative_target, self.dt = derivative_target, dt
        con = dataset.connectome
        self.v = dataset.array("train_v")
        self.y = dataset.array("train_y")
        self.hexals = dataset.array("train_stimulus")
        finite = np.asarray(dataset.array("train_finite"))
        n = self.v.shape[0]
        drawable = finite[: max(n - 5, 1)]
        if derivative_target == "observed":  # the successor frame enters the target
            drawable = drawable & finite[1: drawable.size + 1]
        usable = np.flatnonzero(drawable)
        if usable.size == 0:
            raise ValueError(f"dataset {dataset.path}: no finite training frames")
        self.frames = torch.from_numpy(usable)
        self.n_neurons = con.n_neurons
        self.input_nodes = torch.from_numpy(con.input_nodes).to(device)
        self.input_column = torch.from_numpy(con.node_column[con.input_nodes]).to(device)
        self.resident = device.type == "cuda"
        if self.resident:
            self.v = torch.from_numpy(np.ascontiguousarray(self.v)).to(device, dtype)
            self.y = torch.from_numpy(np.ascontiguousarray(self.y)).to(device, dtype)
            self.hexals = torch.from_numpy(np.ascontiguousarray(self.hexals)).to(device, dtype)
            self.frames = self.frames.to(device)
        self.stats = ActivityStats(np.asarray(dataset.array("train_v_mean")),
                                   np.asarray(dataset.array("train_v_std")))

    def inputs(self, hexals: torch.Tensor) -> torch.Tensor:
        """(B, C) hexals -> (B, N) external input (``stimuli.photoreceptor_input``)."""
        return photoreceptor_input(hexals, self.input_nodes, self.input_column, self.n_neurons)

    def rows(self, idx) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(v, I, y) at frame indices ``idx`` (a tensor on the data's device or a numpy array)."""
        observed = self.derivative_target == "observed"
        if self.resident:
            idx = torch.as_tensor(idx, device=self.device)
            v = self.v[idx]
            y = (self.v[idx + 1] - v) / self.dt if observed else self.y[idx]
            return v, self.inputs(self.hexals[idx]), y
        idx = np.asarray(idx)
        order = np.argsort(idx)  # sorted reads from the memory map
        inv = np.empty_like(order)
        inv[order] = np.arange(order.size)
        sidx = idx[order]

        def take(a, shift: int = 0) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a[sidx + shift])[inv]).to(self.device, self.dtype)

        v = take(self.v)
        y = (take(self.v, 1) - v) / self.dt if observed else take(self.y)
        return v, self.inputs(take(self.hexals)), y


@dataclass
class ActivityStats:
    """Per-neuron mean and std (ddof 1) of the training voltages, and the global 1.5 x std."""

    mean: np.ndarray
    std: np.ndarray

    @property
    def xnorm(self) -> float:
        """1.5 x the std of all training voltages (pooled over neurons and time)."""
        total_var = float(np.mean(self.std.astype(np.float64) ** 2) + np.var(self.mean.astype(np.float64)))
        return 1.5 * float(np.sqrt(total_var))
