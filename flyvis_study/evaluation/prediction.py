"""One-step prediction and rollout tests on held-out clips."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from flyvis_study.evaluation.recovery import _rows_per_call
from flyvis_study.fast.frozen_predictor import FrozenPredictor
from flyvis_study.model.gnn import FlyVisGNN


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
    2-thread ops on these N x 80 products (docs/benchmarks.md; bitwise the same predictions,
    tested). The output is one preallocated array: thousands of small long-lived arrays
    interleaved with the per-call activations fragment glibc's heap.
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
