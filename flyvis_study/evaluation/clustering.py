"""Cell-type clustering of the learned node features (GMM + Hungarian matching)."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score
from sklearn.mixture import GaussianMixture

from flyvis_study.evaluation.recovery import RecoveredParameters


def node_features(embedding: np.ndarray, rec: RecoveredParameters, edge_src: np.ndarray,
                  edge_tgt: np.ndarray, n_neurons: int) -> np.ndarray:
    """[a (d), tau_hat, V_rest_hat, mean/std of W* in, mean/std of W* out] per neuron."""
    def mean_std(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        count = np.bincount(index, minlength=n_neurons)
        s1 = np.bincount(index, weights=rec.W_corrected, minlength=n_neurons)
        s2 = np.bincount(index, weights=rec.W_corrected**2, minlength=n_neurons)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = np.where(count > 0, s1 / count, 0.0)
            std = np.sqrt(np.maximum(np.where(count > 0, s2 / count, 0.0) - mean**2, 0.0))
        return mean, std
    mi, si = mean_std(edge_tgt)
    mo, so = mean_std(edge_src)
    feats = np.column_stack([embedding, rec.tau_hat, rec.V_rest_hat, mi, si, mo, so])
    return np.nan_to_num(feats, nan=0.0, posinf=0.0, neginf=0.0)


def cluster_metrics(features: np.ndarray, node_type: np.ndarray, n_components: int = 100,
                    random_state: int = 42) -> dict:
    """GMM (full covariance) clusters matched to types by the Hungarian method; + ARI, NMI."""
    n_components = min(n_components, features.shape[0])
    try:
        labels = GaussianMixture(n_components=n_components, covariance_type="full",
                                 random_state=random_state).fit_predict(features)
    except (ValueError, np.linalg.LinAlgError):
        # degenerate features (e.g. collapsed embedding): regularise the covariances
        labels = GaussianMixture(n_components=n_components, covariance_type="full", reg_covar=1e-3,
                                 random_state=random_state).fit_predict(features)
    n_types = int(node_type.max()) + 1
    confusion = np.zeros((n_types, n_components), dtype=np.int64)
    np.add.at(confusion, (node_type, labels), 1)
    rows, cols = linear_sum_assignment(-confusion)
    return {"cluster_accuracy": float(confusion[rows, cols].sum() / node_type.size),
            "cluster_ARI": float(adjusted_rand_score(node_type, labels)),
            "cluster_NMI": float(normalized_mutual_info_score(node_type, labels))}


def embedding_separation(embedding: np.ndarray, node_type: np.ndarray, share: float = 0.9,
                         max_points: int = 5000, seed: int = 0) -> dict:
    """How well the learned embedding a_i (N, d) separates the cell types (N,), as numbers.

    silhouette: mean silhouette coefficient of the embedding labelled by cell type (Euclidean;
    on a random subsample of ``max_points`` neurons when N is larger). A type is *separated*
    when at least ``share`` of its neurons are nearer to its own centroid than to any other
    type's centroid; ``n_types_separated`` counts them out of ``n_types``.
    """
    emb = np.asarray(embedding, dtype=np.float64)
    types = np.asarray(node_type)
    present = np.unique(types)
    out = {"silhouette": float("nan"), "n_types_separated": 0, "n_types": int(present.size)}
    if present.size < 2 or not np.isfinite(emb).all():
        return out
    sample = min(max_points, emb.shape[0]) if emb.shape[0] > max_points else None
    out["silhouette"] = float(silhouette_score(emb, types, sample_size=sample, random_state=seed))
    centroids = np.stack([emb[types == t].mean(axis=0) for t in present])
    nearest = present[np.argmin(((emb[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)]
    own = np.array([np.mean(nearest[types == t] == t) for t in present])
    out["n_types_separated"] = int((own >= share).sum())
    return out
