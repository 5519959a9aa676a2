"""The decision rules of the reports: the study's answer from paired comparisons."""

import numpy as np

from flyvis_study.report.verdicts import study_answer
from flyvis_study.study.comparison import CLAIM_MIN_PAIRS, PairedComparison, t_interval


def comparison(metric, differences, config="two_stage_default"):
    """A comparison with these paired differences over a baseline of 0.5 per pair."""
    d = np.asarray(differences, dtype=float)
    low, high = t_interval(d)
    return PairedComparison(metric, "standard", config, pairs=[(k, k) for k in range(d.size)],
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
