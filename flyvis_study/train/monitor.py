"""The in-loop R2 of metrics.log: conn, V_rest and tau R2 of the model as it trains.

Cheaper than the final evaluation (``evaluation.evaluate``): the activity statistics and
the gain frames are computed once, f_theta is read out with ``in_loop_points`` points and
at message 0 (the plain readout). The columns are ``evaluation.names.LOG_COLUMNS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from flyvis_study.evaluation.names import LOG_COLUMNS
from flyvis_study.evaluation.recovery import (
    connectivity_metrics,
    gain_frame_indices,
    recover_parameters,
    tau_metrics,
    vrest_metrics,
)
from flyvis_study.model.gnn import FlyVisGNN
from flyvis_study.world.dataset import Dataset
from flyvis_study.world.training_data import TrainingData

__all__ = ["LOG_COLUMNS", "InLoopEvaluator"]


@dataclass
class InLoopEvaluator:
    """``evaluator(model)`` -> {connectivity_r2, vrest_r2, tau_r2} (affine R2, plain readout)."""

    data: TrainingData
    dataset: Dataset
    n_points: int
    n_gain_frames: int
    v_gain: torch.Tensor = field(init=False)
    I_gain: torch.Tensor = field(init=False)

    def __post_init__(self):
        idx = gain_frame_indices(self.data.v.shape[0], self.n_gain_frames)
        self.v_gain, self.I_gain, _ = self.data.rows(idx)

    def __call__(self, model: FlyVisGNN) -> dict:
        gt = self.dataset.ground_truth
        rec = recover_parameters(model, self.data.stats, self.v_gain, self.I_gain, self.n_points,
                                 corrected=False)
        conn = connectivity_metrics(gt.W, rec.W_corrected, model.W.detach().cpu().numpy())
        return {"connectivity_r2": conn["connectivity_R2"],
                "vrest_r2": vrest_metrics(gt.V_rest, rec.V_rest_hat, self.dataset.connectome.node_type)["V_rest_R2"],
                "tau_r2": tau_metrics(gt.tau, rec.tau_hat)["tau_R2"]}
