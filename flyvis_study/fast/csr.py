"""The synaptic sum as a sparse matrix: M = W_sparse @ h with rows = targets (CSR).

    M_i = sum_{e: tgt(e) = i} W_e h_{src(e)}     <=>   M = A h,  A[tgt(e), src(e)] = W_e

Used where W is fixed for many products (the simulator's ground truth, a trained model
under evaluation), where it beats the gather / scatter-add form; on the CPU the indices are
int32 (N, E < 2^31; faster mat-vecs, bitwise the same result), on CUDA int64 (the form
measured there). Measurements: docs/benchmarks.md.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch


def target_csr(edge_src: np.ndarray, edge_tgt: np.ndarray, weights: np.ndarray, n_neurons: int,
               device: str | torch.device = "cpu") -> torch.Tensor:
    """(N, N) float32 sparse CSR matrix A with A[tgt(e), src(e)] = weights[e] (int32 indices on CPU)."""
    index = np.int32 if torch.device(device).type == "cpu" else np.int64
    edge_src, edge_tgt = np.asarray(edge_src), np.asarray(edge_tgt)
    order = np.lexsort((edge_src, edge_tgt))
    counts = np.bincount(edge_tgt, minlength=n_neurons)
    crow = np.concatenate([[0], np.cumsum(counts)]).astype(index)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
        return torch.sparse_csr_tensor(
            torch.from_numpy(crow), torch.from_numpy(edge_src[order].astype(index)),
            torch.from_numpy(np.asarray(weights)[order].astype(np.float32)), size=(n_neurons, n_neurons),
            check_invariants=False,
        ).to(device)
