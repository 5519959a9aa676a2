"""Data diagnostics: effective ranks and per-cell-type activity summaries."""

from __future__ import annotations

import numpy as np

from flyvis_study.world.connectome import Connectome


def effective_ranks(x: np.ndarray, fractions: tuple[float, ...] = (0.9, 0.99)) -> dict[str, int]:
    """Number of principal components explaining each fraction of the variance of x (T, D).

    Uses the eigenvalues of the smaller of the D x D covariance and the T x T Gram matrix
    of the centred data (the non-zero spectra are identical).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        return {f"{int(f * 100)}%": 0 for f in fractions}
    x = x - x.mean(0)
    gram = x.T @ x if x.shape[1] <= x.shape[0] else x @ x.T
    eig = np.clip(np.linalg.eigvalsh(gram)[::-1], 0, None)
    total = eig.sum()
    if total <= 0:
        return {f"{int(f * 100)}%": 0 for f in fractions}
    cum = np.cumsum(eig) / total
    return {f"{int(f * 100)}%": int(np.searchsorted(cum, f) + 1) for f in fractions}


def activity_summary(mean: np.ndarray, std: np.ndarray, connectome: Connectome) -> dict:
    """Per cell type: mean over neurons of the temporal mean and std of the voltage."""
    types = connectome.node_type
    n_types = len(connectome.cell_types)
    count = np.bincount(types, minlength=n_types)
    type_mean = np.bincount(types, weights=mean, minlength=n_types) / np.maximum(count, 1)
    type_std = np.bincount(types, weights=std, minlength=n_types) / np.maximum(count, 1)
    return {"type_mean": type_mean.round(5).tolist(), "type_std": type_std.round(5).tolist(),
            "min_type_std": float(type_std.min()), "mean_std": float(std.mean())}
