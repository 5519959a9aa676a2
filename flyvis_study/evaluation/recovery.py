"""Evaluation of a trained GNN against the ground truth (definitions: spec/metrics.md).

Recovered-parameter R2, under two named definitions (``evaluation.names.R2_DEFINITIONS``):
- ``affine`` (the seed's; metric names without a suffix: connectivity_R2, tau_R2, V_rest_R2):
  fit learned = a * true + b by least squares; R2 = 1 - SS_res / SS_tot with SS_tot on the
  learned values (= squared Pearson r); the slope a is reported beside it. conn_R2 is taken on
  the edges with |W* - W| <= 5, tau_R2 and V_rest_R2 on every neuron.
- ``identity`` (suffix ``_identity``): R2 = 1 - sum (learned - true)^2 / sum (true - mean true)^2
  about the line learned = true (no fit: a scale or offset error lowers it, and it can be
  negative), on the inliers |learned - true| <= threshold (W: 5, tau:
  evaluation.tau_outlier_threshold, V_rest: evaluation.vrest_outlier_threshold); the share of
  outliers is stored beside it (``*_outlier_share``) with the threshold.

connectivity_R2: per-source g_phi^2 slope r_j over [max(mu_j - 2 sd_j, 0), mu_j + 2 sd_j]
(r_j = 1 if mu_j + sd_j <= 0); per-target f_theta slope s_i and intercept c_i of
F_i(v) = f_theta(v, a_i, 0, 0) over [mu_i - 2 sd_i, mu_i + 2 sd_i]; message gain
gamma_i = median over 8 training frames of dF/dM at the actual input; corrected weight
W*_e = -W_hat_e gamma_i r_j / s_i (non-finite -> 0); edges with |W* - W| > 5 are dropped.
tau_hat = clip(-1 / s, 0, 1); V_rest_hat = -c / s (s = 0 -> 1).

Readouts of tau and V_rest (``READOUTS``), the line F_i(v) = f_theta(v, a_i, M, 0) taken at:
- ``plain`` (the seed's, metric names without a readout suffix): M = 0;
- ``corrected`` (suffix ``_corrected``): M = m0_i, the learned *silent message* of neuron i,

      m0_i = sum_{e: j -> i} W_hat_e g_phi(v_silent, a_j)^2,  v_silent = 0,

  the message the model sends when every presynaptic neuron sits at the threshold below
  which the true synapse W_e ReLU(v_j) transmits nothing. V_rest is the fixed point of a
  neuron with no synaptic drive; in the true model that is "every presynaptic v_j <= 0",
  which the model's message reaches at m0_i, not at 0. The message is identified only up
  to a gauge: h_j -> h_j / c + d_j with f_theta(v, a, M, I) -> f_theta(v, a, c (M - o_i), I),
  o_i = sum_e W_hat_e d_j, predicts exactly the same derivatives; the data barely pin
  g_phi at v_j <= 0, so a trained model carries such offsets. The plain readout moves
  with the gauge (it reads F at M = 0, i.e. at the old message -c o_i); the corrected
  readout does not (m0 moves with it). Shapes: m0 (N,); the line fit as for the plain readout.
The connectivity readout W* uses the plain f_theta slope (the seed's definition).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from flyvis_study.model.gnn import FlyVisGNN
from flyvis_study.world.training_data import ActivityStats

W_OUTLIER = 5.0
READOUTS = ("plain", "corrected")


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


def r2_identity(true: np.ndarray, learned: np.ndarray, threshold: float) -> tuple[float, float]:
    """(identity-line R2 on inliers, outlier share).

    Inliers: finite pairs with |learned - true| <= threshold; R2 = 1 - sum (learned - true)^2 /
    sum (true - mean true)^2 over them (NaN when fewer than two inliers or no spread in true).
    Outlier share: non-inliers / finite pairs (NaN when no finite pair).
    """
    true = np.asarray(true, dtype=np.float64).ravel()
    learned = np.asarray(learned, dtype=np.float64).ravel()
    ok = np.isfinite(true) & np.isfinite(learned)
    if not ok.any():
        return float("nan"), float("nan")
    keep = ok & (np.abs(learned - true) <= threshold)
    share = 1.0 - keep.sum() / ok.sum()
    t, y = true[keep], learned[keep]
    ss_tot = float(((t - t.mean()) ** 2).sum()) if t.size else 0.0
    if t.size < 2 or ss_tot == 0:
        return float("nan"), float(share)
    return float(1.0 - ((y - t) ** 2).sum() / ss_tot), float(share)


def field_metrics(name: str, true: np.ndarray, learned: np.ndarray, threshold: float) -> dict:
    """The field's convention for one parameter: identity R2 on the inliers |learned - true| <=
    threshold (``{name}_R2_field``), identity R2 on all (``{name}_R2_field_all``), and the share
    dropped (``{name}_field_dropped``); printed as ``inliers [all] (% dropped)``."""
    inliers, dropped = r2_identity(true, learned, threshold)
    every, _ = r2_identity(true, learned, np.inf)
    return {f"{name}_R2_field": inliers, f"{name}_R2_field_all": every, f"{name}_field_dropped": dropped}


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
    mu = torch.tensor(stats.mean, device=dev, dtype=model.W.dtype)
    sd = torch.tensor(stats.std, device=dev, dtype=model.W.dtype)
    grid = torch.linspace(0, 1, n_points, device=dev, dtype=model.W.dtype)
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
def silent_message(model: FlyVisGNN, v_silent: float = 0.0) -> torch.Tensor:
    """m0 (N,): each neuron's learned message with every presynaptic neuron at ``v_silent``."""
    v = torch.full((1, model.n_neurons), v_silent, device=model.W.device, dtype=model.W.dtype)
    return model.aggregate(model.edge_activation(v, model.embedding))[0]


@torch.no_grad()
def f_theta_lines(model: FlyVisGNN, stats: ActivityStats, n_points: int = 1000,
                  chunk: int | None = None, message: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(s_i, c_i): slope and intercept of f_theta(v, a_i, M, I=0) over mu_i +- 2 sd_i, with
    M = 0 (``message`` None: the plain readout) or M = message_i (N,) (the corrected one)."""
    dev = model.W.device
    chunk = chunk or _rows_per_call(dev, 32, 2048)
    mu = torch.tensor(stats.mean, device=dev, dtype=model.W.dtype)
    sd = torch.tensor(stats.std, device=dev, dtype=model.W.dtype)
    grid = torch.linspace(-1, 1, n_points, device=dev, dtype=model.W.dtype)
    slopes, intercepts = torch.empty_like(mu), torch.empty_like(mu)  # preallocated (no heap fragments)
    for s in range(0, mu.shape[0], chunk):
        v = mu[s:s + chunk] + 2 * sd[s:s + chunk] * grid[:, None]  # (P, n)
        M = None if message is None else message[s:s + chunk].to(v.dtype).expand_as(v)
        f = model.update(v, model.embedding[s:s + chunk], M, None)
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


def tau_and_rest(slope: np.ndarray, intercept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(tau_hat, V_rest_hat) = (clip(-1 / s, 0, 1), -c / s) of the lines F(v) = s v + c (s = 0 -> 1)."""
    s_safe = np.where(slope == 0, 1.0, slope)
    return np.clip(-1.0 / s_safe, 0.0, 1.0), -intercept / s_safe


@dataclass
class RecoveredParameters:
    """What a trained model says the network is: W* (E,); tau_hat, V_rest_hat (N,) by the
    plain readout and by the corrected one (``*_corrected``, at the silent message m0 (N,));
    the fitted lines (f_slope, f_intercept: plain) and slopes (g_slope r_j), the gain gamma_i."""

    W_corrected: np.ndarray  # (E,)
    tau_hat: np.ndarray  # (N,)
    V_rest_hat: np.ndarray  # (N,)
    f_slope: np.ndarray
    f_intercept: np.ndarray
    g_slope: np.ndarray
    gain: np.ndarray
    silent_message: np.ndarray | None = None  # (N,) m0; None when the corrected readout was not taken
    tau_hat_corrected: np.ndarray | None = None
    V_rest_hat_corrected: np.ndarray | None = None

    def readout(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(tau_hat, V_rest_hat) of a readout in ``READOUTS``."""
        if name == "plain":
            return self.tau_hat, self.V_rest_hat
        if name == "corrected" and self.V_rest_hat_corrected is not None:
            return self.tau_hat_corrected, self.V_rest_hat_corrected
        raise ValueError(f"readout {name!r}: not taken; allowed: {', '.join(READOUTS)}")


def recover_parameters(model: FlyVisGNN, stats: ActivityStats, v_frames: torch.Tensor,
                       I_frames: torch.Tensor, n_points: int = 1000, corrected: bool = True) -> RecoveredParameters:
    """Read W*, tau_hat and V_rest_hat back from a trained model (both readouts, or the plain
    one alone when ``corrected`` is off: the cheap in-loop evaluation)."""
    r = g_phi_slopes(model, stats, n_points)
    s, c = f_theta_lines(model, stats, n_points)
    gamma = message_gain(model, v_frames, I_frames)
    src = model.edge_src.cpu().numpy()
    tgt = model.edge_tgt.cpu().numpy()
    W_hat = model.W.detach().cpu().numpy().astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        W_star = -W_hat * gamma[tgt] * r[src] / s[tgt]
    W_star[~np.isfinite(W_star)] = 0.0
    tau_hat, V_hat = tau_and_rest(s, c)
    rec = RecoveredParameters(W_star, tau_hat, V_hat, s, c, r, gamma)
    if corrected:
        m0 = silent_message(model)
        rec.silent_message = m0.cpu().numpy()
        rec.tau_hat_corrected, rec.V_rest_hat_corrected = tau_and_rest(*f_theta_lines(model, stats, n_points,
                                                                                       message=m0))
    return rec


def connectivity_metrics(W_true: np.ndarray, W_star: np.ndarray, W_hat: np.ndarray) -> dict:
    keep = np.abs(W_star - W_true) <= W_OUTLIER
    r2, slope = r2_affine(W_true[keep], W_star[keep])
    raw, raw_slope = r2_affine(W_true, W_hat)
    identity, share = r2_identity(W_true, W_star, W_OUTLIER)
    return {"connectivity_R2": r2, "connectivity_slope": slope, "connectivity_n_edges": int(keep.sum()),
            "connectivity_R2_raw": raw, "connectivity_slope_raw": raw_slope,
            "connectivity_R2_identity": identity, "connectivity_outlier_share": share,
            "connectivity_outlier_threshold": W_OUTLIER}


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
    identity, share = r2_identity(V_true, V_hat, threshold)
    return {"V_rest_R2": r2, "V_rest_slope": slope, "V_rest_R2_type_median": r2_type,
            "V_rest_R2_inliers": r2_in, "V_rest_inlier_threshold": threshold,
            "V_rest_n_inliers": int(keep.sum()), "V_rest_R2_identity": identity, "V_rest_outlier_share": share}


def tau_metrics(tau_true: np.ndarray, tau_hat: np.ndarray, threshold: float = 0.1) -> dict:
    """tau_R2 (affine, all neurons) and tau_R2_identity (identity line, |tau_hat - tau| <= threshold)."""
    r2, slope = r2_affine(tau_true, tau_hat)
    identity, share = r2_identity(tau_true, tau_hat, threshold)
    return {"tau_R2": r2, "tau_slope": slope, "tau_R2_identity": identity, "tau_outlier_share": share,
            "tau_outlier_threshold": threshold}
