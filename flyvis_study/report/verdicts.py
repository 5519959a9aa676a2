"""The decision rules of the reports: a block's verdict paragraph and the study's answer.

Both are computed from measured statistics and paired comparisons only (no canned text).
"""

from __future__ import annotations

import pandas as pd

from flyvis_study.failures import CONVERGED_CONN, UNRECOVERED_CONN, FailureKind, Status
from flyvis_study.study.comparison import CLAIM_MIN_PAIRS, PairedComparison

GOLD_STANDARD_CONN_R2 = 0.94  # the reference's full-scale standard training (12 runs)
PRESET_SCOPE = {  # what a result made at each preset can and cannot say
    "tiny": ("a test of the machinery (seconds per run, 443 neurons): its runs do not train long enough to "
             "recover the network, so none of its numbers bears on the study's question"),
    "small": ("a 2-core laptop scale (1,203 neurons, a synthetic network, minutes per run): runs recover W "
              "(conn_R2 about 0.94), so paired differences are real for this network and budget, not yet for "
              "the full-scale fly optic lobe"),
    "full": "the study's own scale (13,741 neurons, flyvis model 000 as ground truth)",
}


def preset_statement(presets: list[str]) -> str:
    """One line: the preset(s) the results were made at and what that lets them say."""
    known = [p for p in dict.fromkeys(presets) if p]
    if not known:
        return "Preset: not recorded."
    return " ".join(f"Made at the `{p}` preset: {PRESET_SCOPE.get(p, 'a preset this package does not know')}."
                    for p in known)


def outcome_caveat(runs: pd.DataFrame) -> str:
    """'' when every run converged (conn_R2 > 0.8); else one line, to be read before any verdict:
    how many runs failed or are partial, their failure kinds and first reasons. ``runs``: a run
    table (``study.results.runs_table``: status, failure_kind, reason)."""
    n = len(runs)
    failed = runs[runs["status"] == Status.FAILED]
    partial = runs[runs["status"] == Status.PARTIAL]
    if not len(failed) and not len(partial):
        return ""
    # runs recorded before the one outcome vocabulary (schema < 3) left an unrecovered run's kind empty
    kinds = failed["failure_kind"].replace("", FailureKind.UNRECOVERED.value).value_counts()
    why = "; ".join(dict.fromkeys(str(r) for r in failed["reason"] if str(r)))
    parts = [f"{len(failed)} failed" + (f" ({', '.join(f'{k} {v}' for k, v in kinds.items())})" if len(failed)
                                        else ""),
             f"{len(partial)} partial (conn_R2 {UNRECOVERED_CONN} - {CONVERGED_CONN})"]
    return (f"Caution: {len(failed) + len(partial)} of {n} runs did not converge: {', '.join(parts)}"
            + (f"; reasons: {why[:300]}" if why else "") + ". The numbers below include them; read them as such.")


def repairs_note(repairs: list[str]) -> str:
    """'' when no file was repaired while the block ran; else one markdown line: how many, and
    each repair (``integrity.repaired``: the file, what was wrong, what was done)."""
    if not repairs:
        return ""
    shown = "; ".join(repairs[:5]) + (f"; and {len(repairs) - 5} more" if len(repairs) > 5 else "")
    return (f"**Repaired while this block ran ({len(repairs)}):** {shown}. The numbers below come from the "
            "regenerated or recomputed files.")


def block_verdict(stats: pd.DataFrame, ranked: pd.DataFrame, comparisons: list[PairedComparison] | None = None,
                  preset: str = "", caveat: str = "") -> str:
    """The verdict as a markdown list, from the measured statistics and paired comparisons, led by
    ``caveat`` (``outcome_caveat``: runs that did not converge) when there is one."""
    lines = [f"- **{caveat}**"] if caveat else []
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
    """One line for the study index: the paired V_rest_R2 / conn_R2 differences, else the means;
    led by a caution when runs did not converge."""
    counted = {"failed", "partial", "n_runs"} <= set(stats.columns)
    unconverged = int(stats["failed"].sum() + stats["partial"].sum()) if counted else 0
    caution = (f"CAUTION: {unconverged} of {int(stats['n_runs'].sum())} runs did not converge. "
               if unconverged else "")
    return caution + _headline(stats, comparisons)


def _headline(stats: pd.DataFrame, comparisons: list[PairedComparison] | None) -> str:
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
