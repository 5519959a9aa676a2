"""The decision rules of the reports: a block's verdict paragraph and the study's answer.

Both are computed from measured statistics and paired comparisons only (no canned text).
"""

from __future__ import annotations

import pandas as pd

from flyvis_study.study.comparison import describe_comparison

GOLD_STANDARD_CONN_R2 = 0.94  # the reference's full-scale standard training (12 runs)


def block_verdict(stats: pd.DataFrame, ranked: pd.DataFrame, comparisons: list[dict] | None = None,
                  preset: str = "") -> str:
    """A one-paragraph verdict from the measured statistics."""
    parts = []
    for cfg, row in stats.iterrows():
        parts.append(
            f"**{cfg}** ({row['n_runs']} runs: {row['converged']} converged, {row['partial']} partial, "
            f"{row['failed']} failed): conn_R2 {row['connectivity_R2_mean']:.3f} "
            f"(CV {100 * row['connectivity_R2_cv']:.1f} %, "
            f"min {row['connectivity_R2_min']:.3f}), V_rest_R2 {row['V_rest_R2_mean']:.3f} "
            f"(CV {100 * row['V_rest_R2_cv']:.1f} %, min {row['V_rest_R2_min']:.3f}), tau_R2 {row['tau_R2_mean']:.3f}; "
            f"{'robust' if row['robust'] else 'not robust'}{', fragile' if row['fragile'] else ''}.")
    text = " ".join(parts)
    if len(ranked) > 1:
        text += f" Best-ranked config: **{ranked.index[0]}** (score {ranked['score'].iloc[0]:.3f})."
    for c in comparisons or []:
        text += " " + describe_comparison(c)
    gold = GOLD_STANDARD_CONN_R2
    conn = stats["connectivity_R2_mean"].max()
    text += (f" At the `{preset}` preset the best mean conn_R2 is {conn:.3f} "
             f"({'at or above' if conn >= gold - 0.01 else 'below'} the full-scale gold standard of ~{gold}); "
             "conclusions about the full-scale study need the `full` preset.")
    return text


RAISE_RULE = "the 95 % bootstrap CI of the paired V_rest_R2 difference lies above 0"
KEEP_RULE = "the lower end of the 95 % CI of the paired conn_R2 difference is above -0.02"
KEEP_MARGIN = -0.02


def study_answer(comparisons: list[dict]) -> str:
    """Markdown answer to the key question from paired comparisons (each with 'block').

    Per treatment config: V_rest_R2 *raised* when its paired difference's 95 % CI lies above
    0; conn_R2 *kept* when the CI's lower end is above -0.02. Lists each comparison's
    sentence, then the answer.
    """
    lines = [f"- block {c['block']}: " + describe_comparison(c) for c in comparisons]
    conn = {(c["block"], c["treatment_config"]): c for c in comparisons if c["metric"] == "connectivity_R2"}
    answers = []
    for c in comparisons:
        if c["metric"] != "V_rest_R2" or c["n_pairs"] == 0:
            continue
        k = conn.get((c["block"], c["treatment_config"]))
        raised = bool(c["ci95_low"] > 0)
        kept = k is not None and k["n_pairs"] > 0 and bool(k["ci95_low"] > KEEP_MARGIN)
        answers.append(f"{c['treatment_config']} (block {c['block']}): V_rest_R2 "
                       f"{'raised (CI above 0)' if raised else 'not shown to rise (CI includes or is below 0)'}; "
                       f"conn_R2 {'kept (CI lower bound > -0.02)' if kept else 'not shown to be kept'}.")
    verdict = "**Answer:** " + " ".join(answers) if answers else "**Answer:** not enough paired runs yet."
    return "\n".join(lines + ["", verdict, "", f"Rules: V_rest_R2 is raised when {RAISE_RULE}; conn_R2 is kept "
                                              f"when {KEEP_RULE}."])
