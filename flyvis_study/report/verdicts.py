"""The decision rules of the reports: a block's verdict paragraph and the study's answer.

Both are computed from measured statistics and paired comparisons only (no canned text).
"""

from __future__ import annotations

import pandas as pd

from flyvis_study.study.comparison import CLAIM_MIN_PAIRS, PairedComparison

GOLD_STANDARD_CONN_R2 = 0.94  # the reference's full-scale standard training (12 runs)


def block_verdict(stats: pd.DataFrame, ranked: pd.DataFrame, comparisons: list[PairedComparison] | None = None,
                  preset: str = "") -> str:
    """The verdict as a markdown list, from the measured statistics and paired comparisons."""
    lines = []
    for cfg, row in stats.iterrows():
        lines.append(
            f"- **{cfg}** ({row['n_runs']} runs: {row['converged']} converged, {row['partial']} partial, "
            f"{row['failed']} failed): conn_R2 {row['connectivity_R2_mean']:.3f} "
            f"(CV {100 * row['connectivity_R2_cv']:.1f} %, "
            f"min {row['connectivity_R2_min']:.3f}), V_rest_R2 {row['V_rest_R2_mean']:.3f} "
            f"(CV {100 * row['V_rest_R2_cv']:.1f} %, min {row['V_rest_R2_min']:.3f}), tau_R2 {row['tau_R2_mean']:.3f}; "
            f"{'robust' if row['robust'] else 'not robust'}{', fragile' if row['fragile'] else ''}.")
    if len(ranked) > 1:
        lines.append(f"- Best-ranked config: **{ranked.index[0]}** (score {ranked['score'].iloc[0]:.3f}).")
    for c in comparisons or []:
        lines.append("- " + c.describe())
    gold = GOLD_STANDARD_CONN_R2
    conn = stats["connectivity_R2_mean"].max()
    where = "at or above" if conn >= gold else "within 0.01 of" if conn >= gold - 0.01 else "below"
    lines.append(f"- At the `{preset}` preset the best mean conn_R2 is {conn:.3f} ({where} the full-scale gold "
                 f"standard of ~{gold}); conclusions about the full-scale study need the `full` preset.")
    return "\n".join(lines)


def block_headline(stats: pd.DataFrame, comparisons: list[PairedComparison] | None = None) -> str:
    """One line for the study index: the paired V_rest_R2 / conn_R2 differences, else the means."""
    paired = [c for c in comparisons or [] if c.n_pairs > 0 and c.metric in ("V_rest_R2", "connectivity_R2")]
    if paired:
        by_config: dict[str, list[str]] = {}
        for c in paired:
            by_config.setdefault(c.treatment_config, []).append(f"{c.metric} {c.interval()}")
        n = max(c.n_pairs for c in paired)
        return (f"vs {paired[0].baseline_config} on {n} seed pairs (mean paired difference, 95 % t interval): "
                + "; ".join(f"{cfg}: " + ", ".join(parts) for cfg, parts in by_config.items()))
    return "; ".join(f"{cfg}: conn_R2 {r['connectivity_R2_mean']:.3f}, V_rest_R2 {r['V_rest_R2_mean']:.3f} "
                     f"({r['n_runs']} runs)" for cfg, r in stats.iterrows())


RAISE_RULE = (f"at least {CLAIM_MIN_PAIRS} seed pairs and the 95 % t interval of the paired V_rest_R2 "
              f"difference above 0")
KEEP_RULE = "the lower end of the 95 % t interval of the paired conn_R2 difference is above -0.02"
KEEP_MARGIN = -0.02


def raise_phrase(c: PairedComparison) -> str:
    """Whether the comparison shows a rise (``PairedComparison.raised``), and why not."""
    if c.raised:
        return f"raised (t interval above 0, {c.n_pairs} pairs)"
    if c.n_pairs < CLAIM_MIN_PAIRS:
        return f"no claim ({c.n_pairs} pairs < {CLAIM_MIN_PAIRS})"
    return "not shown to rise (t interval includes or is below 0)"


def study_answer(comparisons: list[PairedComparison]) -> str:
    """Markdown answer to the key question from paired comparisons (each with its ``block``).

    Per treatment config: V_rest_R2 *raised* when ``PairedComparison.raised`` (``RAISE_RULE``);
    conn_R2 *kept* when its t interval's lower end is above -0.02. The answer, the rules, then
    each comparison's sentence.
    """
    lines = [f"- block {c.block}: " + c.describe() for c in comparisons]
    conn = {(c.block, c.treatment_config): c for c in comparisons if c.metric == "connectivity_R2"}
    answers = []
    for c in comparisons:
        if c.metric != "V_rest_R2" or c.n_pairs == 0:
            continue
        k = conn.get((c.block, c.treatment_config))
        kept = k is not None and k.kept(KEEP_MARGIN)
        answers.append(f"{c.treatment_config} (block {c.block}): V_rest_R2 {raise_phrase(c)}; "
                       f"conn_R2 {'kept (t interval lower end > -0.02)' if kept else 'not shown to be kept'}.")
    verdict = "**Answer:** " + " ".join(answers) if answers else "**Answer:** not enough paired runs yet."
    return "\n".join([verdict, "", f"Rules: V_rest_R2 is raised when {RAISE_RULE}; conn_R2 is kept when "
                                    f"{KEEP_RULE}.", "", *lines])
