"""Block datasets, statistics, ranking and the paired comparison on known numbers."""

import numpy as np
import pytest
import xarray as xr

from flyvis_study.study.analysis_log import analysis_entries, append_analysis_logs
from flyvis_study.study.comparison import paired_comparison
from flyvis_study.study.record import run_dataset, write_netcdf_atomic
from flyvis_study.study.results import save_block
from flyvis_study.study.schema import load_block
from flyvis_study.study.spec import RunSpec
from flyvis_study.study.statistics import block_dataset, config_statistics, metric_statistics, ranking


def fake_run(tmp_path, label, sim, train, conn, vrest, tau=0.97, cluster=0.88, status="converged", n_iter=100,
             n_epochs=1, stop_after=None):
    spec = RunSpec(block=1, label=label, sim_seed=sim, train_seed=train, replicate=train)
    rows = [{"epoch": e, "iteration": i, "connectivity_r2": conn * i / 99, "vrest_r2": vrest, "tau_r2": tau,
             "phase": "joint" if i < 40 else "V_rest"} for e in range(n_epochs)
            for i in (n_iter // 5, 2 * n_iter // 5, 3 * n_iter // 5, n_iter - 1)][:stop_after]
    record = {"connectivity_R2": conn, "V_rest_R2": vrest, "tau_R2": tau, "cluster_accuracy": cluster,
              "test_R2": 0.9, "test_pearson": 0.95, "training_time_min": 1.0, "status": status, "reason": "",
              "seed_mode": "generalisation", "run_id": f"{label}-{sim}-{train}", "config_json": "{}",
              "trajectory": {"conn": {"peak": conn, "final": conn, "trend": "rising", "peak_phase": "V_rest"}}}
    path = tmp_path / f"{label}_{sim}_{train}.nc"
    write_netcdf_atomic(run_dataset(spec, record, rows, n_iter), path)
    return path


@pytest.fixture()
def block(tmp_path):
    conn = {"a": [0.94, 0.95, 0.93, 0.96], "b": [0.90, 0.70, 0.95, 0.91]}
    vrest = {"a": [0.50, 0.60, 0.55, 0.45], "b": [0.70, 0.20, 0.65, 0.60]}
    paths = [fake_run(tmp_path, cfg, r, r, conn[cfg][r], vrest[cfg][r]) for cfg in conn for r in range(4)]
    return block_dataset(paths, 1), conn, vrest


def test_block_dataset_dims_and_round_trip(block, tmp_path):
    ds, _, _ = block
    assert set(ds["connectivity_R2"].dims) == {"config", "ground_truth", "sim_seed", "train_seed"}
    assert ds.sizes["config"] == 2 and ds.sizes["step"] == 4
    assert ds["traj_conn"].dims == ("config", "ground_truth", "sim_seed", "train_seed", "step")
    save_block(ds, tmp_path / "block1.nc")
    again = load_block(tmp_path / "block1.nc")
    xr.testing.assert_allclose(again["connectivity_R2"], ds["connectivity_R2"])
    assert list(again["statistic"].values) == ["n", "mean", "std", "cv", "min"]
    assert again["summary"].sel(config="a", metric="connectivity_R2", statistic="n").item() == 4


def test_runs_of_different_lengths_assemble_on_the_union_grid(tmp_path):
    """Different epochs and iterations per epoch, a run diverged mid-way, one that never trained."""
    paths = [fake_run(tmp_path, "e1", 0, 0, 0.9, 0.5, n_iter=100, n_epochs=1),
             fake_run(tmp_path, "e2", 0, 0, 0.9, 0.5, n_iter=120, n_epochs=2),
             fake_run(tmp_path, "e2", 1, 1, 0.9, 0.5, n_iter=120, n_epochs=2, stop_after=3),  # diverged
             fake_run(tmp_path, "e2", 2, 2, float("nan"), float("nan"), status="failed", stop_after=0)]
    ds = block_dataset(paths, 4)
    assert set(ds["connectivity_R2"].dims) == {"config", "ground_truth", "sim_seed", "train_seed"}
    steps = ds["step"].values
    assert list(steps) == sorted({20, 40, 60, 99} | {24, 48, 72, 119, 144, 168, 192, 239})
    finite = np.isfinite(ds["traj_conn"]).sum("step").isel(ground_truth=0)
    assert finite.sel(config="e1", sim_seed=0, train_seed=0) == 4
    assert finite.sel(config="e2", sim_seed=0, train_seed=0) == 8
    assert finite.sel(config="e2", sim_seed=1, train_seed=1) == 3
    assert finite.sel(config="e2", sim_seed=2, train_seed=2) == 0
    e2 = ds["traj_conn"].sel(config="e2", ground_truth="synthetic/seed0", sim_seed=0, train_seed=0)
    assert list(steps[np.isfinite(e2.values)]) == [24, 48, 72, 119, 144, 168, 192, 239]
    assert ds["status"].sel(config="e1", sim_seed=1, train_seed=1).item() == ""  # no such run (one network)
    st = config_statistics(ds)
    assert st.loc["e2", "n_runs"] == 3 and st.loc["e2", "connectivity_R2_n"] == 2
    save_block(ds, tmp_path / "block4.nc")
    again = load_block(tmp_path / "block4.nc")
    xr.testing.assert_identical(again["traj_conn"], ds["traj_conn"])


def test_longer_labels_and_reasons_than_the_first_run_file_survive_the_block_file(tmp_path):
    """The first run file's string widths (its netCDF encoding) must not cut the others'."""
    paths = [fake_run(tmp_path, "a", 0, 0, 0.9, 0.5),
             fake_run(tmp_path, "a_much_longer_label_than_the_first", 0, 0, 0.9, 0.5, status="failed")]
    save_block(block_dataset(paths, 6), tmp_path / "block6.nc")
    again = load_block(tmp_path / "block6.nc")
    assert sorted(again["config"].values) == ["a", "a_much_longer_label_than_the_first"]
    assert again["status"].sel(config="a_much_longer_label_than_the_first").values.ravel()[0] == "failed"


def test_statistics_match_numpy(block):
    ds, conn, vrest = block
    st = config_statistics(ds)
    for cfg in ("a", "b"):
        x = np.array(conn[cfg])
        assert st.loc[cfg, "connectivity_R2_mean"] == pytest.approx(x.mean())
        assert st.loc[cfg, "connectivity_R2_std"] == pytest.approx(x.std(ddof=1))
        assert st.loc[cfg, "connectivity_R2_cv"] == pytest.approx(x.std(ddof=1) / x.mean())
        assert st.loc[cfg, "connectivity_R2_min"] == pytest.approx(x.min())
    # a: conn CV ~1.4 %, min 0.93; tau constant; V_rest CV ~12 %, min 0.45; cluster 0.88 -> robust
    assert bool(st.loc["a", "robust"]) and not bool(st.loc["a", "fragile"])
    # b: V_rest min 0.20 < 0.5 x mean -> fragile
    assert bool(st.loc["b", "fragile"]) and not bool(st.loc["b", "robust"])
    score_a = np.mean(conn["a"]) * (1 - st.loc["a", "connectivity_R2_cv"]) + 0.5 * np.mean(vrest["a"]) * (
        1 - st.loc["a", "V_rest_R2_cv"])
    assert st.loc["a", "score"] == pytest.approx(score_a)
    assert list(ranking(st).index) == ["a", "b"]


def test_metric_statistics_skip_missing_runs_and_unmeasured_metrics():
    """The xarray reductions of ``metric_statistics`` on a hand-made block: cells without a run
    (run_id "") hold garbage that must not count, a NaN metric is skipped, one value has no std."""
    seeds = {"ground_truth": ["g"], "sim_seed": [0, 1, 2], "train_seed": [0, 1, 2]}
    conn = np.full((2, 1, 3, 3), 123.0)
    run_id = np.full((2, 1, 3, 3), "", dtype=object)
    for i, value in enumerate((0.5, 0.7, np.nan)):  # config a: 3 runs, the third unmeasured
        conn[0, 0, i, i], run_id[0, 0, i, i] = value, f"a{i}"
    conn[1, 0, 0, 0], run_id[1, 0, 0, 0] = 0.9, "b0"  # config b: one run
    dims = ("config", "ground_truth", "sim_seed", "train_seed")
    ds = xr.Dataset({"connectivity_R2": (dims, conn), "run_id": (dims, run_id.astype(str))},
                    coords={"config": ["a", "b"], **seeds})
    st = metric_statistics(ds, metrics=("connectivity_R2",))["connectivity_R2"]
    a, b = (st.sel(config=c).to_series() for c in ("a", "b"))
    assert a["n"] == 2 and a["mean"] == pytest.approx(0.6) and a["min"] == 0.5
    assert a["std"] == pytest.approx(np.std([0.5, 0.7], ddof=1)) and a["cv"] == pytest.approx(a["std"] / 0.6)
    assert b["n"] == 1 and b["mean"] == 0.9 and b["min"] == 0.9 and np.isnan(b["std"]) and np.isnan(b["cv"])


def test_ranking_needs_three_runs(tmp_path):
    paths = [fake_run(tmp_path, "few", r, r, 0.9, 0.5) for r in range(2)]
    st = config_statistics(block_dataset(paths, 1))
    assert np.isnan(st.loc["few", "score"]) and len(ranking(st)) == 0


@pytest.mark.slow
def test_paired_comparison(tmp_path):
    base = block_dataset([fake_run(tmp_path, "gold_standard", r, r, 0.94, v)
                          for r, v in enumerate([0.2, 0.4, 0.3, 0.5])], 0)
    two = block_dataset([fake_run(tmp_path, "two_stage", r, r, 0.93, v)
                         for r, v in enumerate([0.5, 0.6, 0.55, 0.7])], 1)
    c = paired_comparison(base, two, "V_rest_R2")
    assert c.n_pairs == 4 and c.n_positive == 4
    d = np.array([0.3, 0.2, 0.25, 0.2])
    np.testing.assert_allclose(c.differences, d)
    assert c.mean_difference == pytest.approx(d.mean())
    assert c.ci95_low > 0 and c.ci95_high <= 0.3 + 1e-9
    assert c.wilcoxon_p == pytest.approx(0.125)  # the smallest two-sided p with 4 pairs
    assert c.sign_flip_p == pytest.approx(2 / 16)  # all positive: only the all-+ and all-- patterns reach it
    half = 3.182446305284263 * d.std(ddof=1) / 2  # t_{0.975, 3} (tables) x sd / sqrt(4)
    assert (c.t_low, c.t_high) == pytest.approx((d.mean() - half, d.mean() + half))
    assert c.effect_size_dz == pytest.approx(d.mean() / d.std(ddof=1))
    assert not c.raised  # 4 pairs: no claim, however clear
    # only shared seed pairs count
    other = block_dataset([fake_run(tmp_path, "two_stage_x", r + 10, r, 0.9, 0.5) for r in range(2)], 1)
    assert paired_comparison(base, other, "V_rest_R2").n_pairs == 0


def test_sign_flip_p_is_exact():
    from flyvis_study.study.comparison import sign_flip_p

    # d = (1, 2, 3): the 8 sign patterns give |mean| 2, 4/3, 2/3, 0, 0, 2/3, 4/3, 2 (times 1/1): 2 reach 2
    assert sign_flip_p(np.array([1.0, 2.0, 3.0])) == pytest.approx(2 / 8)
    # d = (1, -1, 3, 0.5): |mean| >= 0.875 for 4 of 16 patterns (+-(1,-1,3,.5), +-(-1,-1,3,.5)... counted)
    d = np.array([1.0, -1.0, 3.0, 0.5])
    signs = np.array(np.meshgrid(*[[1, -1]] * 4)).reshape(4, -1).T
    assert sign_flip_p(d) == pytest.approx(np.mean(np.abs(signs @ d) >= abs(d.sum()) - 1e-12))
    assert np.isnan(sign_flip_p(np.array([])))


def test_analysis_log_in_seed_format(block, tmp_path):
    ds, _, _ = block
    entries = analysis_entries(ds)
    first = entries["a"][0]
    for field in ("## Iter 1: converged", "Node:", "Mode/Strategy:", "Seeds: sim_seed=0, train_seed=0",
                  "Config:", "Metrics: connectivity_R2=0.940",
                  "R2 definitions: the Metrics line's R2 are affine (squared Pearson r", "R2 trajectory: conn peak=",
                  "Readouts and the field's convention: not measured", "Mutation:",
                  "Observation:", "Variance update: a now has 1 runs", "Next:"):
        assert field in first
    assert "Variance update: a now has 4 runs, CV(conn_R2)=1.4%" in entries["a"][3]
    append_analysis_logs(ds, tmp_path)
    append_analysis_logs(ds, tmp_path)  # idempotent: entries are not duplicated
    text = (tmp_path / "a_analysis.md").read_text()
    assert text.count("## Iter") == 4
