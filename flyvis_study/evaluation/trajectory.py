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


def trajectory_observations(rows: list[dict], tolerance: float = 0.01) -> list[str]:
    """What a run's in-loop R2 trajectory shows, as short sentences (the seed's key patterns).

    ``rows``: metrics.log rows in order (epoch, phase, connectivity_r2, vrest_r2, tau_r2; and
    ``step``, the iteration counted over all epochs, when known). Reported: where conn_R2
    peaked and how far it ended below the peak; where V_rest_R2 peaked and where it ended;
    every change of conn_R2 larger than
    ``tolerance`` across an epoch switch or a joint -> V_rest phase switch (last row before vs
    first row after); and, per V_rest phase, how V_rest_R2 moved from the phase's start (last
    joint row) to its end.
    """
    rows = [r for r in rows if np.isfinite(r["connectivity_r2"])]
    if not rows:
        return ["no in-loop R2 was logged"]

    def at(r):
        step = r.get("step")
        return (f"iteration {int(step)} " if step is not None else "") + f"(epoch {int(r['epoch'])}, {r['phase']})"

    conn = np.array([r["connectivity_r2"] for r in rows])
    k = int(np.argmax(conn))
    out = [f"conn_R2 peaked at {conn[k]:.3f} at {at(rows[k])}"
           + (f" and ended {conn[k] - conn[-1]:.3f} below it" if conn[k] - conn[-1] > tolerance else
              ", and held to the end")]
    vrest = np.array([r["vrest_r2"] for r in rows])
    v = int(np.nanargmax(vrest)) if np.isfinite(vrest).any() else -1
    if v >= 0:
        out.append(f"V_rest_R2 peaked at {vrest[v]:.3f} at {at(rows[v])} and ended at {vrest[-1]:.3f}")
    for prev, cur in zip(rows[:-1], rows[1:]):
        if cur["epoch"] != prev["epoch"]:
            switch = f"the start of epoch {int(cur['epoch'])}"
        elif prev["phase"] == "joint" and cur["phase"] == "V_rest":
            switch = f"the switch to the V_rest phase in epoch {int(cur['epoch'])}"
        else:
            continue
        change = cur["connectivity_r2"] - prev["connectivity_r2"]
        if abs(change) > tolerance:
            out.append(f"conn_R2 {'fell' if change < 0 else 'rose'} by {abs(change):.3f} at {switch} "
                       f"({prev['connectivity_r2']:.3f} -> {cur['connectivity_r2']:.3f})")
    for i, r in enumerate(rows):
        starts = r["phase"] == "V_rest" and (i == 0 or rows[i - 1]["phase"] != "V_rest" or
                                               rows[i - 1]["epoch"] != r["epoch"])
        if not starts:
            continue
        j = i
        while j + 1 < len(rows) and rows[j + 1]["phase"] == "V_rest" and rows[j + 1]["epoch"] == r["epoch"]:
            j += 1
        before = rows[i - 1]["vrest_r2"] if i > 0 else r["vrest_r2"]
        change = rows[j]["vrest_r2"] - before
        verb = "rose" if change > tolerance else "fell" if change < -tolerance else "stayed"
        out.append(f"V_rest_R2 {verb} in the V_rest phase of epoch {int(r['epoch'])} "
                   f"({before:.3f} -> {rows[j]['vrest_r2']:.3f})")
    return out
