import pytest

from flyvis_study.config import load_run_config
from flyvis_study.train.schedule import coefficients, learning_rates, log_iterations, phase_of

PARAMS = __import__("conftest").REPO / "params"


def test_effective_coefficients_match_the_reference():
    t = load_run_config(PARAMS / "two_stage.yaml").training
    e0, e1 = coefficients(t, 0), coefficients(t, 1)
    assert e0["W_L1"] == 0 and e0["W_L2"] == 3.5e-6
    assert e0["g_phi_L1"] == pytest.approx(0.1833, abs=1e-4) and e0["f_theta_L1"] == 0
    assert e1["W_L1"] == pytest.approx(1.298e-5, rel=1e-3) and e1["W_L2"] == 0
    assert e1["g_phi_L1"] == pytest.approx(0.1141, abs=1e-4)
    assert e1["f_theta_L1"] == pytest.approx(0.1648, abs=1e-4)
    for e in (e0, e1):
        assert (e["f_theta_L2"], e["g_phi_diff"], e["g_phi_norm"]) == (0.0015, 750, 0.9)


def test_phase_learning_rates():
    t = load_run_config(PARAMS / "two_stage.yaml").training
    j, r = learning_rates(t, "joint"), learning_rates(t, "V_rest")
    assert j == {"W": 5e-4, "g_phi": 1.2e-3, "f_theta": 1.2e-3, "embedding": 1.55e-3}
    assert r["W"] == pytest.approx(5e-5) and r["g_phi"] == pytest.approx(1.2e-4)
    assert r["f_theta"] == 1.2e-3 and r["embedding"] == 1.55e-3
    assert phase_of(51_199, 51_200) == "joint" and phase_of(51_200, 51_200) == "V_rest"


def test_log_cadence_full_scale():
    rows = log_iterations(128_000)
    assert rows[:5] == [2_560, 5_120, 7_680, 10_240, 12_800]
    assert rows[:13] == [2560, 5120, 7680, 10240, 12800, 25600, 38400, 51200, 64000, 76800, 89600, 102400, 115200]
    assert rows[13:] == [127_999] and len(rows) == 14
