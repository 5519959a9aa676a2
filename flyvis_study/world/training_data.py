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
    stimulus.
    """

    def __init__(self, dataset: Dataset, device: torch.device, dtype: torch.dtype = torch.float32):
        self.device, self.dtype = device, dtype
        con = dataset.connectome
        self.v = dataset.array("train_v")
        self.y = dataset.array("train_y")
        self.hexals = dataset.array("train_stimulus")
        finite = np.asarray(dataset.array("train_finite"))
        n = self.v.shape[0]
        usable = np.flatnonzero(finite[: max(n - 5, 1)])
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
        if self.resident:
            idx = torch.as_tensor(idx, device=self.device)
            return self.v[idx], self.inputs(self.hexals[idx]), self.y[idx]
        idx = np.asarray(idx)
        order = np.argsort(idx)  # sorted reads from the memory map
        inv = np.empty_like(order)
        inv[order] = np.arange(order.size)
        sidx = idx[order]
        take = lambda a: torch.from_numpy(np.ascontiguousarray(a[sidx])[inv]).to(self.device, self.dtype)  # noqa: E731
        return take(self.v), self.inputs(take(self.hexals)), take(self.y)


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
