"""One optimiser step: eager, or captured in a CUDA graph."""

from __future__ import annotations

import torch

from flyvis_study.config import RunConfig
from flyvis_study.model.gnn import FlyVisGNN
from flyvis_study.train.loss import training_loss
from flyvis_study.train.optimizer import set_phase
from flyvis_study.train.precision import cuda_matmul_precision
from flyvis_study.world.training_data import TrainingData


class EagerStep:
    """One optimiser step: loss (data + regularisers), backward, Adam. Returns the detached loss.
    CUDA matrix products run at ``training.matmul_precision`` (``train.precision``).

    Called with the batch's frame indices (B,) and, when the silent-input anchor is on, the
    step's anchor voltages (N,) (``train.loss``)."""

    def __init__(self, model: FlyVisGNN, optimizer: torch.optim.Optimizer, data: TrainingData,
                 cfg: RunConfig, xnorm: float):
        self.model, self.optimizer, self.data, self.cfg, self.xnorm = model, optimizer, data, cfg, xnorm
        self.coeffs: dict[str, float] = {}

    def configure(self, coeffs: dict[str, float], phase: str, epoch: int = 0) -> None:
        """Set the epoch's coefficients and the learning rates of the phase in that epoch."""
        self.coeffs = coeffs
        set_phase(self.optimizer, self.cfg, phase, epoch)

    def eager(self, idx, silent: torch.Tensor | None = None) -> torch.Tensor:
        with cuda_matmul_precision(self.cfg.training.matmul_precision):
            v, I, y = self.data.rows(idx)
            loss = training_loss(self.model, v, I, y, self.coeffs, self.xnorm, silent)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        return loss.detach()

    __call__ = eager


class CudaGraphStep(EagerStep):
    """The same step captured in a CUDA graph (whole forward + backward + fused Adam).

    The first ``warmup`` steps run eagerly on a side stream (real iterations, as PyTorch
    requires before capture); the step is then captured and replayed with the batch indices
    copied into a static tensor (and the silent-input anchor's voltages into another). A new
    graph is captured whenever the phase or epoch changes (learning rates and coefficients
    are baked into the graph). Same maths as ``EagerStep``.
    """

    def __init__(self, *args, warmup: int = 3, **kwargs):
        super().__init__(*args, **kwargs)
        dev = self.model.W.device
        self.static_idx = torch.zeros(self.cfg.training.batch_size, dtype=torch.long, device=dev)
        self.static_silent = torch.zeros(self.model.n_neurons, dtype=self.model.W.dtype, device=dev)
        self.static_loss = None
        self.graph = None
        self.warmup_left = warmup
        self.side = torch.cuda.Stream(device=dev)

    def configure(self, coeffs: dict[str, float], phase: str, epoch: int = 0) -> None:
        super().configure(coeffs, phase, epoch)
        self._release()  # recapture with the new constants

    def _release(self) -> None:
        """Drop the current graph and everything allocated in its private memory pool."""
        if self.graph is not None:
            torch.cuda.current_stream().synchronize()
        self.graph, self.static_loss = None, None
        self.optimizer.zero_grad(set_to_none=True)

    def _capture(self) -> None:
        self._release()
        self.side.wait_stream(torch.cuda.current_stream())
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self.side), cuda_matmul_precision(self.cfg.training.matmul_precision):
            v, I, y = self.data.rows(self.static_idx)
            self.static_loss = training_loss(self.model, v, I, y, self.coeffs, self.xnorm, self.static_silent)
            self.static_loss.backward()
            self.optimizer.step()
        torch.cuda.current_stream().wait_stream(self.side)
        self.graph = graph

    def __call__(self, idx, silent: torch.Tensor | None = None) -> torch.Tensor:
        if self.warmup_left > 0:
            self.warmup_left -= 1
            self.side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.side):
                loss = self.eager(idx, silent)
                self.optimizer.zero_grad(set_to_none=True)
            torch.cuda.current_stream().wait_stream(self.side)
            return loss
        self.static_idx.copy_(idx, non_blocking=True)
        if silent is not None:
            self.static_silent.copy_(silent)
        if self.graph is None:
            self._capture()
        self.graph.replay()
        return self.static_loss.detach().clone()


def make_step(model, optimizer, data, cfg: RunConfig, xnorm: float) -> EagerStep:
    """CUDA-graph step on a GPU when ``training.cuda_graph`` is on, else the eager step."""
    if data.device.type == "cuda" and cfg.training.cuda_graph:
        return CudaGraphStep(model, optimizer, data, cfg, xnorm)
    return EagerStep(model, optimizer, data, cfg, xnorm)
