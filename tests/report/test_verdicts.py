"""The decision rules of the reports: the study's answer from paired comparisons."""

import numpy as np

from flyvis_study.report.verdicts import study_answer
from flyvis_study.study.comparison import CLAIM_MIN_PAIRS, PairedComparison, t_interval


def comparison(metric, differences, config="two_stage"):
    """A comparison with these paired differences over a baseline of 0.5 per pair."""
    d = np.asarray(differences, dtype=float)
    low, high = t_interval(d)
    return PairedComparison(metric, "gold_standard", config, pairs=[(k, k) for k in range(d.size)],
                            baseline=[0.5] * d.size, treatment=list(0.5 + d), t_low=low, t_high=high, block=1)


def spread(mean, n, sd=0.01):
    return mean + sd * np.linspace(-1, 1, n)


def test_raised_and_kept():
    text = study_answer([comparison("V_rest_R2", spread(0.1, CLAIM_MIN_PAIRS)),
                         comparison("connectivity_R2", spread(0.0, CLAIM_MIN_PAIRS))])
    assert f"V_rest_R2 raised (t interval above 0, {CLAIM_MIN_PAIRS} pairs); conn_R2 kept" in text


def test_four_pairs_make_no_claim_however_clear():
    text = study_answer([comparison("V_rest_R2", spread(0.1, 4)), comparison("connectivity_R2", spread(0.0, 4))])
    assert f"V_rest_R2 no claim (4 pairs < {CLAIM_MIN_PAIRS})" in text


def test_interval_touching_zero_is_not_raised_and_a_large_conn_drop_is_not_kept():
    text = study_answer([comparison("V_rest_R2", spread(0.05, CLAIM_MIN_PAIRS, sd=0.2)),
                         comparison("connectivity_R2", spread(-0.06, CLAIM_MIN_PAIRS))])
    assert "not shown to rise" in text and "conn_R2 not shown to be kept" in text


def test_no_pairs_gives_no_answer():
    assert "not enough paired runs yet" in study_answer([])
    assert "not enough paired runs yet" in study_answer([comparison("V_rest_R2", [])])


def test_no_verdict_without_first_saying_that_runs_did_not_converge():
    import pandas as pd

    from flyvis_study.report.verdicts import block_headline, block_verdict, outcome_caveat, preset_statement

    runs = pd.DataFrame({"status": ["converged", "failed", "partial", "failed"],
                         "failure_kind": ["", "diverged", "", ""],
                         "reason": ["", "non-finite loss at epoch 0, iteration 3", "", "connectivity_R2 0.112 < 0.3"]})
    caveat = outcome_caveat(runs)
    assert caveat == ("Caution: 3 of 4 runs did not converge: 2 failed (diverged 1, unrecovered 1), 1 partial "
                      "(conn_R2 0.3 - 0.8); reasons: non-finite loss at epoch 0, iteration 3; connectivity_R2 "
                      "0.112 < 0.3. The numbers below include them; read them as such.")
    assert outcome_caveat(runs.iloc[:1]) == ""
    stats = pd.DataFrame({"n_runs": [4], "converged": [1], "partial": [1], "failed": [2],
                          **{f"{m}_{s}": [0.5] for m in ("connectivity_R2", "V_rest_R2", "tau_R2")
                             for s in ("mean", "cv", "min")}, "robust": [False], "fragile": [True]},
                         index=pd.Index(["gold_standard"], name="config"))
    verdict = block_verdict(stats, pd.DataFrame(), [], "tiny", caveat=caveat)
    assert verdict.splitlines()[0] == f"- **{caveat}**"
    assert block_headline(stats, []).startswith("CAUTION: 3 of 4 runs did not converge. gold_standard: conn_R2")
    assert preset_statement(["tiny", "tiny"]).startswith("Made at the `tiny` preset: a test of the machinery")
    assert preset_statement(["small", "full"]).count("Made at the") == 2
