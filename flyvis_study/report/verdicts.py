"""The verdict paragraph of a block report, from its measured statistics."""

from __future__ import annotations

import pandas as pd

from flyvis_study.study.comparison import describe_comparison


# ----------------------------------------------------------------------------- verdicts
def block_verdict(block: int, stats: pd.DataFrame, ranked: pd.DataFrame, comparisons: list[dict] | None = None,
                  preset: str = "") -> str:
    """A one-paragraph verdict from the measured statistics."""
    parts = []
    for cfg, row in stats.iterrows():
        parts.append(
            f"**{cfg}** ({row['n_runs']} runs: {row['converged']} converged, {row['partial']} partial, "
            f"{row['failed']} failed): conn_R2 {row['connectivity_R2_mean']:.3f} (CV {100 * row['connectivity_R2_cv']:.1f} %, "
            f"min {row['connectivity_R2_min']:.3f}), V_rest_R2 {row['V_rest_R2_mean']:.3f} "
            f"(CV {100 * row['V_rest_R2_cv']:.1f} %, min {row['V_rest_R2_min']:.3f}), tau_R2 {row['tau_R2_mean']:.3f}; "
            f"{'robust' if row['robust'] else 'not robust'}{', fragile' if row['fragile'] else ''}.")
    text = " ".join(parts)
    if len(ranked) > 1:
        text += f" Best-ranked config: **{ranked.index[0]}** (score {ranked['score'].iloc[0]:.3f})."
    for c in comparisons or []:
        text += " " + describe_comparison(c)
    gold = 0.94
    conn = stats["connectivity_R2_mean"].max()
    text += (f" At the `{preset}` preset the best mean conn_R2 is {conn:.3f} "
             f"({'at or above' if conn >= gold - 0.01 else 'below'} the full-scale gold standard of ~{gold}); "
             "conclusions about the full-scale study need the `full` preset.")
    return text
