"""The decision rules of the reports: the study's answer from paired comparisons."""

from flyvis_study.report.verdicts import study_answer


def comparison(metric, low, high, config="two_stage_default", n=4):
    mean = (low + high) / 2
    return {"block": 1, "metric": metric, "treatment_config": config, "baseline_config": "standard", "n_pairs": n,
            "mean_baseline": 0.5, "mean_treatment": 0.5 + mean, "mean_difference": mean, "ci95_low": low,
            "ci95_high": high, "effect_size_dz": 1.0, "wilcoxon_p": 0.1, "ttest_p": 0.05, "n_positive": n}


def test_raised_and_kept():
    text = study_answer([comparison("V_rest_R2", 0.05, 0.2), comparison("connectivity_R2", -0.01, 0.01)])
    assert "V_rest_R2 raised (CI above 0); conn_R2 kept (CI lower bound > -0.02)" in text


def test_ci_touching_zero_is_not_raised_and_a_large_conn_drop_is_not_kept():
    text = study_answer([comparison("V_rest_R2", -0.01, 0.2), comparison("connectivity_R2", -0.07, -0.05)])
    assert "not shown to rise" in text and "conn_R2 not shown to be kept" in text


def test_no_pairs_gives_no_answer():
    assert "not enough paired runs yet" in study_answer([])
    assert "not enough paired runs yet" in study_answer([comparison("V_rest_R2", 0.1, 0.2, n=0)])
