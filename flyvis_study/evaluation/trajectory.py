"""Peak / final / trend of the in-loop R2 trajectories (metrics.log rows)."""

from __future__ import annotations

import numpy as np


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
