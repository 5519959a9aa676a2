"""Ground-truth dynamics of the optic lobe (forward Euler with process noise).

    dv_i/dt = f_i(v, e) = ( -v_i + V_rest_i + sum_{e: j -> i} W_e ReLU(v_j) + e_i(t) ) / tau_i

Per frame t: y_t = f(v_t, e_t) (the clean derivative at the stored, noisy state);
store (v_t, e_t, y_t); then v_{t+1} = v_t + dt * y_t + sigma * xi_t with xi ~ N(0, I).
tau is not clamped. The initial state is the deterministic steady state reached from
v = V_rest after 100 noise-free Euler steps with every photoreceptor held at 0.5 and tau
clamped to max(tau, dt).

The synaptic sum is a sparse CSR mat-vec (rows = targets); the simulator runs on CPU or CUDA.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from flyvis_study.fast.csr import target_csr
from flyvis_study.world.connectome import Connectome
from flyvis_study.world.ground_truth import GroundTruth
from flyvis_study.world.stimuli import photoreceptor_input


class Simulator:
    """Integrates the ODE for one connectome and ground truth.

    Args:
        connectome: graph (N neurons, E edges).
        ground_truth: V_rest (N,), tau (N,), W (E,).
        dt: Euler step (s), one step per stored frame.
        noise_level: sigma of the process noise added to v after each step.
        device: torch device for the integration.
    """

    def __init__(self, connectome: Connectome, ground_truth: GroundTruth, dt: float = 0.02,
                 noise_level: float = 0.05, device: str | torch.device = "cpu"):
        self.connectome = connectome
        self.dt = float(dt)
        self.noise_level = float(noise_level)
        self.device = torch.device(device)
        self.W = target_csr(connectome.edge_src, connectome.edge_tgt, ground_truth.W, connectome.n_neurons,
                            self.device)
        self.V_rest = torch.from_numpy(ground_truth.V_rest).to(self.device)
        self.tau = torch.from_numpy(ground_truth.tau).to(self.device)
        self.input_nodes = torch.from_numpy(connectome.input_nodes).to(self.device)
        self.input_column = torch.from_numpy(connectome.node_column[connectome.input_nodes]).to(self.device)

    def derivative(self, v: torch.Tensor, e: torch.Tensor, tau: torch.Tensor | None = None) -> torch.Tensor:
        """f(v, e) for a state (N,) and input (N,)."""
        tau = self.tau if tau is None else tau
        syn = torch.mv(self.W, torch.relu(v))
        return (-v + self.V_rest + syn + e) / tau

    def external_input(self, hexals: torch.Tensor) -> torch.Tensor:
        """(C,) hexal values -> (N,) input: photoreceptors get their column's value."""
        return photoreceptor_input(hexals, self.input_nodes, self.input_column, self.connectome.n_neurons,
                                   dtype=self.V_rest.dtype)

    def initial_state(self, n_steps: int = 100) -> torch.Tensor:
        """Steady state under a uniform 0.5 input, tau clamped to max(tau, dt), no noise."""
        v = self.V_rest.clone()
        tau = torch.clamp(self.tau, min=self.dt)
        e = self.external_input(torch.full((self.connectome.n_columns,), 0.5, device=self.device))
        for _ in range(n_steps):
            v = v + self.dt * self.derivative(v, e, tau)
        return v

    @torch.no_grad()
    def run(self, hexals: np.ndarray, v0: torch.Tensor, generator: torch.Generator,
            chunk: int = 512) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Integrate over a (T, C) hexal stream; yields (t0, v[t0:t1], y[t0:t1]) as float32 numpy.

        ``generator`` must live on ``self.device``; the final state is left in ``self.state``.
        """
        n_frames, n = hexals.shape[0], self.connectome.n_neurons
        v = v0.clone()
        for t0 in range(0, n_frames, chunk):
            t1 = min(t0 + chunk, n_frames)
            stim = torch.from_numpy(np.ascontiguousarray(hexals[t0:t1])).to(self.device)
            noise = torch.randn((t1 - t0, n), generator=generator, device=self.device)
            noise.mul_(self.noise_level)
            vs = torch.empty((t1 - t0, n), device=self.device)
            ys = torch.empty((t1 - t0, n), device=self.device)
            for k in range(t1 - t0):
                y = self.derivative(v, self.external_input(stim[k]))
                vs[k] = v
                ys[k] = y
                v = v + self.dt * y + noise[k]
            yield t0, vs.cpu().numpy(), ys.cpu().numpy()
        self.state = v
