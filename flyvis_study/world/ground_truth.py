"""Ground-truth parameters (V_rest, tau, W) of the simulated optic lobe.

Model: W_e = sign(edge type) * n_syn(offset group) * strength(edge type); tau_i and V_rest_i
are per cell type and broadcast to neurons.

Parameter vectors are kept in the *reference order*: cell types in JSON order, edge types
and offset groups in first-appearance order of the extent-8 connectome (the order of flyvis
checkpoints; identical at extent 15). ``instantiate`` maps them onto any connectome by key,
so a checkpoint also drives small extents.

Two sources:
- ``load_flyvis_checkpoint``: a flyvis ``chkpt`` (torch zip) with ``network.nodes_bias``,
  ``nodes_time_const``, ``edges_sign``, ``edges_syn_count`` (log n_syn) and
  ``edges_syn_strength``.
- ``synthetic.synthetic_ground_truth``: flyvis-like marginals drawn from a dedicated seed,
  rescaled for bounded dynamics and calibrated so every cell type is driven.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from flyvis_study.world.connectome import Connectome, cached_connectome

REFERENCE_EXTENT = 8


TARGET_ABSCISSA = 0.85


@dataclass(frozen=True)
class GroundTruthParams:
    """Per-type and per-edge-type ground truth in reference order.

    Shapes: V_rest_type, tau_type (65,); edge_type_keys (K, 2) type index pairs;
    edge_type_sign, edge_type_strength (K,); group_keys (G, 4) (src, tar, du, dv);
    group_nsyn (G,) mean synapse count.
    """

    source: str
    V_rest_type: np.ndarray
    tau_type: np.ndarray
    edge_type_keys: np.ndarray
    edge_type_sign: np.ndarray
    edge_type_strength: np.ndarray
    group_keys: np.ndarray
    group_nsyn: np.ndarray
    info: dict

    def to_json(self) -> dict:
        return {
            "source": self.source,
            "V_rest_type": self.V_rest_type.tolist(),
            "tau_type": self.tau_type.tolist(),
            "edge_type_keys": self.edge_type_keys.tolist(),
            "edge_type_sign": self.edge_type_sign.tolist(),
            "edge_type_strength": self.edge_type_strength.tolist(),
            "group_keys": self.group_keys.tolist(),
            "group_nsyn": self.group_nsyn.tolist(),
            "info": self.info,
        }

    @classmethod
    def from_json(cls, d: dict) -> GroundTruthParams:
        f32 = lambda k: np.asarray(d[k], dtype=np.float32)  # noqa: E731
        return cls(
            source=d["source"], V_rest_type=f32("V_rest_type"), tau_type=f32("tau_type"),
            edge_type_keys=np.asarray(d["edge_type_keys"], dtype=np.int64).reshape(-1, 2),
            edge_type_sign=f32("edge_type_sign"), edge_type_strength=f32("edge_type_strength"),
            group_keys=np.asarray(d["group_keys"], dtype=np.int64).reshape(-1, 4),
            group_nsyn=f32("group_nsyn"), info=d.get("info", {}),
        )


@dataclass(frozen=True)
class GroundTruth:
    """Ground truth on one connectome: V_rest (N,), tau (N,), W (E,) float32."""

    params: GroundTruthParams
    V_rest: np.ndarray
    tau: np.ndarray
    W: np.ndarray

    def weight_matrix(self, connectome: Connectome) -> sp.csr_matrix:
        """Sparse N x N matrix with entry [i, j] = sum of W_e over edges j -> i."""
        n = connectome.n_neurons
        return sp.csr_matrix((self.W.astype(np.float64), (connectome.edge_tgt, connectome.edge_src)),
                             shape=(n, n))


def _index_of(keys: np.ndarray, wanted: np.ndarray, what: str) -> np.ndarray:
    lookup = {tuple(k): i for i, k in enumerate(keys.tolist())}
    try:
        return np.asarray([lookup[tuple(k)] for k in wanted.tolist()], dtype=np.int64)
    except KeyError as err:
        raise ValueError(f"ground truth has no value for {what} {err.args[0]}") from None


def instantiate(params: GroundTruthParams, connectome: Connectome) -> GroundTruth:
    """Broadcast per-type / per-edge-type values onto the neurons and edges of ``connectome``."""
    et = _index_of(params.edge_type_keys, connectome.edge_types, "edge type")[connectome.edge_type]
    grp = _index_of(params.group_keys, connectome.offset_groups, "offset group")[connectome.edge_group]
    W = params.edge_type_sign[et] * params.group_nsyn[grp] * params.edge_type_strength[et]
    return GroundTruth(
        params=params,
        V_rest=params.V_rest_type[connectome.node_type].astype(np.float32),
        tau=params.tau_type[connectome.node_type].astype(np.float32),
        W=W.astype(np.float32),
    )


def load_flyvis_checkpoint(path: str | Path) -> GroundTruthParams:
    """Read a flyvis checkpoint (torch zip); vectors are in reference first-appearance order."""
    import torch  # noqa: PLC0415 - torch-free import path: ground truths are read without torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ground_truth.checkpoint: no such file {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        net = state["network"]
        vec = {k: net[k].detach().cpu().numpy().astype(np.float64) for k in (
            "nodes_bias", "nodes_time_const", "edges_sign", "edges_syn_count", "edges_syn_strength")}
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same message
        raise ValueError(
            f"ground_truth.checkpoint: {path} is not a readable flyvis checkpoint "
            f"(need network.nodes_bias/nodes_time_const/edges_sign/edges_syn_count/"
            f"edges_syn_strength): {err}"
        ) from None
    ref = cached_connectome(REFERENCE_EXTENT)
    expected = {"nodes_bias": len(ref.cell_types), "edges_sign": ref.edge_types.shape[0],
                "edges_syn_count": ref.offset_groups.shape[0]}
    for key, size in expected.items():
        if vec[key].shape != (size,):
            raise ValueError(f"ground_truth.checkpoint: {path}: {key} has shape "
                             f"{vec[key].shape}, expected ({size},)")
    return GroundTruthParams(
        source=f"flyvis checkpoint {path.name}",
        V_rest_type=vec["nodes_bias"].astype(np.float32),
        tau_type=vec["nodes_time_const"].astype(np.float32),
        edge_type_keys=ref.edge_types.copy(),
        edge_type_sign=vec["edges_sign"].astype(np.float32),
        edge_type_strength=vec["edges_syn_strength"].astype(np.float32),
        group_keys=ref.offset_groups.copy(),
        group_nsyn=np.exp(vec["edges_syn_count"]).astype(np.float32),
        info={"checkpoint": str(path)},
    )


def spectral_abscissa(matrix: sp.spmatrix) -> float:
    """Largest real part of the eigenvalues of a sparse square matrix (ARPACK, which='LR')."""
    n = matrix.shape[0]
    if n <= 600:
        return float(np.linalg.eigvals(matrix.toarray()).real.max())
    vals = spla.eigs(matrix.astype(np.float64), k=1, which="LR", return_eigenvectors=False,
                     tol=1e-5, maxiter=20 * n, ncv=min(n - 1, 64), v0=np.ones(n))
    return float(vals.real.max())


def w_statistics(W: np.ndarray) -> dict:
    """Summary of a weight vector (as in the reference's expected-counts file)."""
    a = np.abs(W)
    return {
        "min": float(W.min()), "max": float(W.max()), "mean": float(W.mean()),
        "std": float(W.std()), "n_exactly_zero": int(np.count_nonzero(W == 0)),
        "n_positive": int(np.count_nonzero(W > 0)), "n_negative": int(np.count_nonzero(W < 0)),
        "abs_percentiles_25_50_75_95_99": np.percentile(a, [25, 50, 75, 95, 99]).tolist(),
    }


def save_params(params: GroundTruthParams, path: Path) -> None:
    path.write_text(json.dumps(params.to_json()))


def load_params(path: Path) -> GroundTruthParams:
    return GroundTruthParams.from_json(json.loads(path.read_text()))
