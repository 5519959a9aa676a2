"""Evaluation of a trained GNN against the ground truth (definitions: spec/metrics.md).

Recovered-parameter R2: fit learned = a * true + b by least squares;
R2 = 1 - SS_res / SS_tot with SS_tot on the learned values (= squared Pearson r); the slope a
is reported beside it.

connectivity_R2: per-source g_phi^2 slope r_j over [max(mu_j - 2 sd_j, 0), mu_j + 2 sd_j]
(r_j = 1 if mu_j + sd_j <= 0); per-target f_theta slope s_i and intercept c_i of
F_i(v) = f_theta(v, a_i, 0, 0) over [mu_i - 2 sd_i, mu_i + 2 sd_i]; message gain
gamma_i = median over 8 training frames of dF/dM at the actual input; corrected weight
W*_e = -W_hat_e gamma_i r_j / s_i (non-finite -> 0); edges with |W* - W| > 5 are dropped.
tau_hat = clip(-1 / s, 0, 1); V_rest_hat = -c / s (s = 0 -> 1).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from .model import FlyVisGNN, FrozenPredictor

W_OUTLIER = 5.0


def r2_affine(true: np.ndarray, learned: np.ndarray) -> tuple[float, float]:
    """(R2, slope) of the least-squares fit learned = slope * true + b.

    R2 = 1 - SS_res / SS_tot, SS_tot taken on the learned values; 0 if SS_tot == 0 or
    fewer than two finite points.
    """
    true = np.asarray(true, dtype=np.float64).ravel()
    learned = np.asarray(learned, dtype=np.float64).ravel()
    ok = np.isfinite(true) & np.isfinite(learned)
    true, learned = true[ok], learned[ok]
    if true.size < 2:
        return 0.0, float("nan")
    tc = true - true.mean()
    var_t = float(tc @ tc)
    lc = learned - learned.mean()
    ss_tot = float(lc @ lc)
    if ss_tot == 0 or var_t == 0:
        return 0.0, 0.0 if var_t else float("nan")
    slope = float(tc @ lc) / var_t
    resid = lc - slope * tc
    return float(1.0 - (resid @ resid) / ss_tot), slope


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


def _rows_per_call(device: torch.device, cpu: int, cuda: int) -> int:
    """Work size per MLP call: small on CPU (activations stay in cache), large on a GPU (few launches)."""
    return cuda if device.type == "cuda" else cpu


def _line_fit(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares slope and intercept along the last axis; x, y (n, P)."""
    xm, ym = x.mean(-1, keepdim=True), y.mean(-1, keepdim=True)
    xc = x - xm
    var = (xc * xc).sum(-1)
    slope = (xc * (y - ym)).sum(-1) / torch.where(var > 0, var, torch.ones_like(var))
    return slope, ym.squeeze(-1) - slope * xm.squeeze(-1)


@torch.no_grad()
def g_phi_slopes(model: FlyVisGNN, stats: ActivityStats, n_points: int = 1000, chunk: int | None = None) -> np.ndarray:
    """r_j: slope of g_phi(v, a_j)^2 over [max(mu - 2 sd, 0), mu + 2 sd]; 1 where mu + sd <= 0."""
    dev = model.W.device
    chunk = chunk or _rows_per_call(dev, 32, 2048)  # neurons per call (x n_points rows)
    mu = torch.tensor(stats.mean, device=dev, dtype=torch.float32)
    sd = torch.tensor(stats.std, device=dev, dtype=torch.float32)
    grid = torch.linspace(0, 1, n_points, device=dev)
    out = torch.ones(mu.shape[0], device=dev)
    for s in range(0, mu.shape[0], chunk):
        lo = torch.clamp(mu[s:s + chunk] - 2 * sd[s:s + chunk], min=0)
        hi = mu[s:s + chunk] + 2 * sd[s:s + chunk]
        v = lo + (hi - lo) * grid[:, None]  # (P, n): grid points x neurons
        h = model.edge_activation(v, model.embedding[s:s + chunk])
        slope, _ = _line_fit(v.t(), h.t())
        active = (mu[s:s + chunk] + sd[s:s + chunk]) > 0
        out[s:s + chunk] = torch.where(active, slope, torch.ones_like(slope))
    return out.cpu().numpy()


@torch.no_grad()
def f_theta_lines(model: FlyVisGNN, stats: ActivityStats, n_points: int = 1000,
                  chunk: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(s_i, c_i): slope and intercept of f_theta(v, a_i, M=0, I=0) over mu_i +- 2 sd_i."""
    dev = model.W.device
    chunk = chunk or _rows_per_call(dev, 32, 2048)
    mu = torch.tensor(stats.mean, device=dev, dtype=torch.float32)
    sd = torch.tensor(stats.std, device=dev, dtype=torch.float32)
    grid = torch.linspace(-1, 1, n_points, device=dev)
    slopes, intercepts = torch.empty_like(mu), torch.empty_like(mu)  # preallocated (no heap fragments)
    for s in range(0, mu.shape[0], chunk):
        v = mu[s:s + chunk] + 2 * sd[s:s + chunk] * grid[:, None]  # (P, n)
        f = model.update(v, model.embedding[s:s + chunk], None, None)
        slopes[s:s + chunk], intercepts[s:s + chunk] = _line_fit(v.t(), f.t())
    return slopes.cpu().numpy(), intercepts.cpu().numpy()


def message_gain(model: FlyVisGNN, v_frames: torch.Tensor, I_frames: torch.Tensor) -> np.ndarray:
    """gamma_i = median over frames of dF/dM at the actual input (true v, I, model message)."""
    with torch.no_grad():
        M = model.aggregate(model.edge_activation(v_frames, model.embedding))
    M = M.detach().requires_grad_(True)
    with torch.enable_grad():
        out = model.update(v_frames, model.embedding.detach(), M, I_frames)
        (grad,) = torch.autograd.grad(out.sum(), M)
    return grad.median(dim=0).values.cpu().numpy()


def gain_frame_indices(n_frames: int, n_gain_frames: int = 8) -> np.ndarray:
    """Training frames for the message gain: evenly spaced from T/10 to T - 100."""
    lo, hi = n_frames // 10, max(n_frames - 100, n_frames // 10)
    return np.linspace(lo, hi, n_gain_frames).astype(np.int64)


@dataclass
class RecoveredParameters:
    W_corrected: np.ndarray  # (E,)
    tau_hat: np.ndarray  # (N,)
    V_rest_hat: np.ndarray  # (N,)
    f_slope: np.ndarray
    f_intercept: np.ndarray
    g_slope: np.ndarray
    gain: np.ndarray


def recover_parameters(model: FlyVisGNN, stats: ActivityStats, v_frames: torch.Tensor,
                       I_frames: torch.Tensor, n_points: int = 1000) -> RecoveredParameters:
    """Read W*, tau_hat and V_rest_hat back from a trained model."""
    r = g_phi_slopes(model, stats, n_points)
    s, c = f_theta_lines(model, stats, n_points)
    gamma = message_gain(model, v_frames, I_frames)
    src = model.edge_src.cpu().numpy()
    tgt = model.edge_tgt.cpu().numpy()
    W_hat = model.W.detach().cpu().numpy().astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        W_star = -W_hat * gamma[tgt] * r[src] / s[tgt]
        s_safe = np.where(s == 0, 1.0, s)
        tau_hat = np.clip(-1.0 / s_safe, 0.0, 1.0)
        V_hat = -c / s_safe
    W_star[~np.isfinite(W_star)] = 0.0
    return RecoveredParameters(W_star, tau_hat, V_hat, s, c, r, gamma)


def connectivity_metrics(W_true: np.ndarray, W_star: np.ndarray, W_hat: np.ndarray) -> dict:
    keep = np.abs(W_star - W_true) <= W_OUTLIER
    r2, slope = r2_affine(W_true[keep], W_star[keep])
    raw, raw_slope = r2_affine(W_true, W_hat)
    return {"connectivity_R2": r2, "connectivity_slope": slope, "connectivity_n_edges": int(keep.sum()),
            "connectivity_R2_raw": raw, "connectivity_slope_raw": raw_slope}


def vrest_metrics(V_true: np.ndarray, V_hat: np.ndarray, node_type: np.ndarray,
                  threshold: float = 0.5) -> dict:
    """Headline V_rest_R2 (all neurons) and its robust companions."""
    r2, slope = r2_affine(V_true, V_hat)
    n_types = int(node_type.max()) + 1
    med = np.array([np.nanmedian(V_hat[node_type == k]) if np.any(node_type == k) else np.nan
                    for k in range(n_types)])
    true_type = np.array([V_true[node_type == k][0] if np.any(node_type == k) else np.nan
                          for k in range(n_types)])
    r2_type, _ = r2_affine(true_type, med)
    err = np.abs(V_hat - V_true)
    keep = np.isfinite(err) & (err <= threshold)
    r2_in, _ = r2_affine(V_true[keep], V_hat[keep])
    return {"V_rest_R2": r2, "V_rest_slope": slope, "V_rest_R2_type_median": r2_type,
            "V_rest_R2_inliers": r2_in, "V_rest_inlier_threshold": threshold,
            "V_rest_n_inliers": int(keep.sum())}


def tau_metrics(tau_true: np.ndarray, tau_hat: np.ndarray) -> dict:
    r2, slope = r2_affine(tau_true, tau_hat)
    return {"tau_R2": r2, "tau_slope": slope}


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
    from scipy.optimize import linear_sum_assignment
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
    from sklearn.mixture import GaussianMixture

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


def _nanmean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else float("nan")


def per_neuron_pearson_r2(pred: np.ndarray, true: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Per column (neuron): Pearson r and R2 = 1 - SS_res/SS_tot (no refit); NaN where undefined.

    Computed in float64 over chunks of columns (bounded memory for T x N arrays).
    """
    n = pred.shape[1]
    r = np.full(n, np.nan)
    r2 = np.full(n, np.nan)
    for s in range(0, n, chunk):
        p = np.asarray(pred[:, s:s + chunk], dtype=np.float64)
        t = np.asarray(true[:, s:s + chunk], dtype=np.float64)
        pc, tc = p - p.mean(0), t - t.mean(0)
        with np.errstate(divide="ignore", invalid="ignore"):
            r[s:s + chunk] = (pc * tc).sum(0) / np.sqrt((pc**2).sum(0) * (tc**2).sum(0))
            r2[s:s + chunk] = 1 - ((p - t) ** 2).sum(0) / (tc**2).sum(0)
    r[~np.isfinite(r)] = np.nan
    r2[~np.isfinite(r2)] = np.nan
    return r, r2


def predict_frames(predict: FrozenPredictor, v: np.ndarray, I: np.ndarray, batch: int,
                   device: torch.device) -> np.ndarray:
    """predict(v_t, I_t) for every frame t of (T, N) arrays -> (T, N) float32.

    On a CPU with k >= 2 intra-op threads the frames are split over k Python threads with one
    intra-op thread each (restored afterwards): independent single-threaded streams beat
    2-thread ops on these 13,741 x 80 products (3.7 vs 4.2-4.8 ms per frame on 2 cores,
    bitwise the same predictions, tested). The output is one preallocated array: thousands of
    small long-lived arrays interleaved with the per-call activations fragment glibc's heap
    (measured: +4.4 MB RSS per call at full scale).
    """
    pred = np.empty(v.shape, dtype=np.float32)

    def run(starts) -> None:
        with torch.no_grad():
            for s in starts:
                vb = torch.as_tensor(np.array(v[s:s + batch]), device=device)
                Ib = torch.as_tensor(np.array(I[s:s + batch]), device=device)
                pred[s:s + batch] = predict(vb, Ib).cpu().numpy()

    starts = range(0, v.shape[0], batch)
    workers = min(torch.get_num_threads(), len(starts)) if device.type == "cpu" else 1
    if workers <= 1:
        run(starts)
        return pred
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(run, [starts[k::workers] for k in range(workers)]))
    finally:
        torch.set_num_threads(previous)
    return pred


@torch.no_grad()
def one_step_test(model: FlyVisGNN, v: np.ndarray, I: np.ndarray, y: np.ndarray,
                  batch: int | None = None) -> dict:
    """test_pearson / test_R2: NaN-safe means over neurons of per-neuron r and R2 over time."""
    dev = model.W.device
    batch = batch or _rows_per_call(dev, 1, 64)  # test frames per call
    pred = predict_frames(FrozenPredictor(model), v, I, batch, dev)
    r, r2 = per_neuron_pearson_r2(pred, np.asarray(y))
    return {"test_pearson": _nanmean(r), "test_R2": _nanmean(r2)}


@torch.no_grad()
def rollout_test(model: FlyVisGNN, v: np.ndarray, I: np.ndarray, dt: float) -> dict:
    """Autonomous rollout from the true v at test frame 0 (no noise, clamp to [-100, 100])."""
    dev = model.W.device
    T = v.shape[0]
    if T < 2:
        return {"rollout_pearson": float("nan"), "rollout_pearson_std": float("nan"),
                "rollout_rmse": float("nan"), "rollout_rmse_std": float("nan"), "rollout_frames": T}
    I_t = torch.as_tensor(np.array(I), device=dev)
    predict = FrozenPredictor(model)
    state = torch.as_tensor(np.array(v[0]), device=dev)[None]
    traj = torch.empty((T, v.shape[1]), device=dev)
    steps = T
    for t in range(T):
        traj[t] = state[0]
        state = torch.clamp(state + dt * predict(state, I_t[t:t + 1]), -100, 100)
        if t % 100 == 99 and not torch.isfinite(state).all():
            steps = t + 1
            break
    traj = traj[:steps].cpu().numpy()
    true = np.asarray(v[:steps])
    r, _ = per_neuron_pearson_r2(traj, true)
    rmse = np.sqrt(np.nanmean((traj - true) ** 2, axis=0))
    return {"rollout_pearson": _nanmean(r), "rollout_pearson_std": float(np.nanstd(r)),
            "rollout_rmse": _nanmean(rmse), "rollout_rmse_std": float(np.nanstd(rmse)),
            "rollout_frames": int(steps)}


def trend(values: np.ndarray, tolerance: float = 0.02) -> str:
    """rising / stable / decaying, from the last third L of the checkpoints (>= 2, final included).

    decaying if final < max(L) - tolerance; rising if final is max(L) and final > min(L) +
    tolerance; stable otherwise. (tolerance in R2 units, default 0.02.)
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size < 2:
        return "stable"
    third = values[-max(2, int(np.ceil(values.size / 3))):]
    final = values[-1]
    if final < third.max() - tolerance:
        return "decaying"
    if final > third.min() + tolerance and final >= third.max():
        return "rising"
    return "stable"


def trajectory_summary(rows: list[dict]) -> dict:
    """Peak (value, iteration, epoch, phase), final and trend of conn, vrest and tau R2."""
    out = {}
    for key, name in (("connectivity_r2", "conn"), ("vrest_r2", "vrest"), ("tau_r2", "tau")):
        vals = np.array([r[key] for r in rows], dtype=np.float64)
        if vals.size == 0 or not np.isfinite(vals).any():
            out[name] = {"peak": float("nan"), "peak_iteration": -1, "peak_epoch": -1,
                         "peak_phase": "", "final": float("nan"), "trend": "stable"}
            continue
        k = int(np.nanargmax(vals))
        out[name] = {"peak": float(vals[k]), "peak_iteration": int(rows[k]["iteration"]),
                     "peak_epoch": int(rows[k]["epoch"]), "peak_phase": rows[k]["phase"],
                     "final": float(vals[-1]), "trend": trend(vals)}
    return out
