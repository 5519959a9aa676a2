"""Final evaluation of a trained model: every metric of spec/metrics.md in one dict.

The evaluation runs in sections (``EVALUATION_SECTIONS``: section -> the metrics it
measures). A section that raises leaves its metrics out (they read NaN in the run file) and
its reason in ``out["metric_failures"]`` ({section: "ExceptionType: message"}); the other
sections are still measured. Parameter recovery feeds the connectivity, tau, V_rest and
clustering sections: when it fails, they fail with it. Infrastructure errors (memory, I/O,
CUDA) are raised, not recorded: the run is retried.
"""

from __future__ import annotations

import time

import numpy as np

from flyvis_study.config import RunConfig
from flyvis_study.evaluation.clustering import cluster_metrics, node_features
from flyvis_study.evaluation.names import EVALUATION_SECTIONS, READOUT_SUFFIX
from flyvis_study.evaluation.prediction import one_step_test, rollout_test
from flyvis_study.evaluation.recovery import (
    RecoveredParameters,
    connectivity_metrics,
    field_metrics,
    gain_frame_indices,
    recover_parameters,
    tau_metrics,
    vrest_metrics,
)
from flyvis_study.failures import is_infrastructure_error
from flyvis_study.model.gnn import FlyVisGNN
from flyvis_study.world.dataset import Dataset
from flyvis_study.world.stimuli import photoreceptor_input
from flyvis_study.world.training_data import TrainingData


def test_inputs(dataset: Dataset, stop: int) -> np.ndarray:
    con = dataset.connectome
    hexals = np.asarray(dataset.array("test_stimulus")[:stop])
    return photoreceptor_input(hexals, con.input_nodes, con.node_column[con.input_nodes], con.n_neurons)




def readout_metrics(readout: str, rec: RecoveredParameters, gt, node_type: np.ndarray, ev) -> tuple[dict, dict]:
    """(tau metrics, V_rest metrics) of one readout, named with its suffix (``names.READOUT_SUFFIX``)."""
    tau_hat, V_hat = rec.readout(readout)
    suffix = READOUT_SUFFIX[readout]
    tau = {**tau_metrics(gt.tau, tau_hat, ev.tau_outlier_threshold),
           **field_metrics("tau", gt.tau, tau_hat, ev.field_tau_threshold)}
    rest = {**vrest_metrics(gt.V_rest, V_hat, node_type, ev.vrest_outlier_threshold),
            **field_metrics("V_rest", gt.V_rest, V_hat, ev.field_V_rest_threshold)}
    return {k + suffix: v for k, v in tau.items()}, {k + suffix: v for k, v in rest.items()}


def evaluate(model: FlyVisGNN, dataset: Dataset, cfg: RunConfig,
             data: TrainingData | None = None) -> tuple[dict, RecoveredParameters | None]:
    """All final metrics (recovered parameters, clustering, one-step test, rollout) + timings.

    Returns (metrics, recovered parameters or None when their recovery failed).
    """
    t0 = time.perf_counter()
    model.eval()
    dev = model.W.device
    data = data if data is not None else TrainingData(dataset, dev)
    ev = cfg.evaluation
    gt, con = dataset.ground_truth, dataset.connectome
    out: dict = {}
    failures: dict[str, str] = {}

    def measure(section: str, compute) -> None:
        try:
            out.update(compute())
        except Exception as err:  # noqa: BLE001 - one failed section never loses the others
            if is_infrastructure_error(err):
                raise
            failures[section] = f"{type(err).__name__}: {err}"

    def recover() -> RecoveredParameters:
        idx = gain_frame_indices(data.v.shape[0], ev.n_gain_frames)
        v_gain, I_gain, _ = data.rows(idx)
        return recover_parameters(model, data.stats, v_gain, I_gain, ev.n_points)

    rec = None
    try:
        rec = recover()
    except Exception as err:  # noqa: BLE001
        if is_infrastructure_error(err):
            raise
        reason = f"parameter recovery failed ({type(err).__name__}: {err})"
        failures.update({s: reason for s in ("connectivity", "tau", "V_rest", "clustering")})
    if rec is not None:
        W_hat = model.W.detach().cpu().numpy()
        measure("connectivity", lambda: {**connectivity_metrics(gt.W, rec.W_corrected, W_hat),
                                         **field_metrics("connectivity", gt.W, rec.W_corrected,
                                                         ev.field_W_threshold)})
        readouts = [readout_metrics(r, rec, gt, con.node_type, ev) for r in READOUT_SUFFIX]
        measure("tau", lambda: {k: v for tau, _ in readouts for k, v in tau.items()})
        measure("V_rest", lambda: {k: v for _, rest in readouts for k, v in rest.items()})
        measure("clustering", lambda: cluster_metrics(
            node_features(model.embedding.detach().cpu().numpy(), rec, con.edge_src, con.edge_tgt, con.n_neurons),
            con.node_type, ev.gmm_components))
    n_test = dataset.n_test if ev.test_frames is None else min(dataset.n_test, ev.test_frames)
    if n_test > 0:
        v_test = dataset.array("test_v")[:n_test]
        y_test = dataset.array("test_y")[:n_test]
        I_test = test_inputs(dataset, n_test)
        measure("one_step_test", lambda: one_step_test(model, v_test, I_test, y_test))
        n_roll = min(n_test, ev.rollout_frames)
        if n_roll > 1:
            measure("rollout", lambda: rollout_test(model, v_test[:n_roll], I_test[:n_roll], cfg.simulation.dt))
    else:
        out.update({"test_pearson": float("nan"), "test_R2": float("nan")})
    for section in failures:
        out.update({k: float("nan") for k in EVALUATION_SECTIONS[section]})
    out["metric_failures"] = failures
    out["test_frames"] = int(n_test)
    out["eval_time_s"] = time.perf_counter() - t0
    model.train()
    return out, rec

