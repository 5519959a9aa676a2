"""The V_rest levers: blank stretches, the epoch-level LR drop, the constant regulariser schedule,
the identity-line R2, the stable identity of earlier runs and datasets, and block 6's analysis."""

import math

import numpy as np
import pytest
from conftest import FAST, REPO

from flyvis_study.config import ConfigError, load_run_config
from flyvis_study.evaluation.recovery import r2_affine, r2_identity, tau_metrics, vrest_metrics
from flyvis_study.study.record import NETCDF_ENGINE
from flyvis_study.study.spec import RunSpec
from flyvis_study.train.schedule import coefficients, learning_rates
from flyvis_study.world.connectome import hex_columns
from flyvis_study.world.stimuli import build_clip_library, build_streams

PARAMS = REPO / "params"


# ----------------------------------------------------------------------------- identity of earlier runs
def test_new_keys_at_their_default_keep_earlier_run_ids_and_dataset_keys(dataset_root):
    """The committed small example was made before the lever keys existed: its run id holds, with
    the keys left out or given at their default, and moves once a lever is set."""
    from flyvis_study.world.connectome import cached_connectome
    from flyvis_study.world.dataset import dataset_key, resolve_ground_truth

    spec = RunSpec(block=1, label="two_stage", base_config="two_stage.yaml", preset="small", sim_seed=0,
                   train_seed=0)
    assert spec.run_id == "s0_t0__bfa309e7"  # the content key (study.spec.run_id_of)
    assert (REPO / "reports" / "examples" / "small" / "runs" / spec.run_id / "run.nc").is_file()
    defaults = {"simulation.stimulus.blank_fraction": 0.0, "training.epoch_lr_ratio": 1.0,
                "training.regulariser_schedule": "per_epoch", "evaluation.tau_outlier_threshold": 0.1}
    same = RunSpec(**{**spec.model_dump(), "overrides": defaults})
    assert same.run_id.endswith("__bfa309e7")
    for key, value in (("simulation.stimulus.blank_fraction", 0.5), ("training.epoch_lr_ratio", 0.1),
                       ("training.regulariser_schedule", "constant"), ("evaluation.tau_outlier_threshold", 0.2)):
        moved = RunSpec(**{**spec.model_dump(), "overrides": {key: value}})
        assert not moved.run_id.endswith("__bfa309e7"), key

    plain = load_run_config(PARAMS / "gold_standard.yaml", preset="tiny").simulation
    zero = load_run_config(PARAMS / "gold_standard.yaml", preset="tiny",
                           overrides={"simulation.stimulus.blank_fraction": 0}).simulation
    half = load_run_config(PARAMS / "gold_standard.yaml", preset="tiny",
                           overrides={"simulation.stimulus.blank_fraction": 0.5}).simulation
    params = resolve_ground_truth(plain, cached_connectome(plain.extent), dataset_root)
    assert resolve_ground_truth(half, cached_connectome(half.extent), dataset_root).to_json() == params.to_json()
    assert dataset_key(plain, params) == dataset_key(zero, params) != dataset_key(half, params)


@pytest.mark.parametrize("key,value,allowed", [
    ("simulation.stimulus.blank_fraction", 1.0, "less than 1"),
    ("simulation.stimulus.blank_fraction", -0.1, "greater than or equal to 0"),
    ("training.epoch_lr_ratio", 0, "greater than 0"),
    ("training.regulariser_schedule", "weekly", "'per_epoch' or 'constant'"),
])
def test_bad_lever_values_are_one_line_naming_the_key(key, value, allowed):
    with pytest.raises(ConfigError) as err:
        load_run_config(PARAMS / "gold_standard.yaml", preset="tiny", overrides={key: value})
    message = str(err.value)
    assert key in message and allowed in message and "Traceback" not in message


# ----------------------------------------------------------------------------- blank stretches
def _segments(clip_ids: np.ndarray) -> list[tuple[int, int]]:
    starts = [0, *(np.nonzero(np.diff(clip_ids))[0] + 1).tolist()]
    return list(zip(starts, [*starts[1:], len(clip_ids)]))


def test_blank_fraction_blanks_the_start_of_every_train_and_test_clip():
    lib = build_clip_library(hex_columns(1), n_base_clips=10)
    plain = build_streams(lib, 3000, simulation_seed=0)
    blank = build_streams(lib, 3000, simulation_seed=0, blank_fraction=0.5)
    np.testing.assert_array_equal(build_streams(lib, 3000, simulation_seed=0, blank_fraction=0.0).train, plain.train)
    for a, b in ((plain.train, blank.train), (plain.test, blank.test)):
        assert a.shape == b.shape
    np.testing.assert_array_equal(plain.train_clip, blank.train_clip)
    for stream_plain, stream_blank, ids in ((plain.train, blank.train, plain.train_clip),
                                            (plain.test, blank.test, plain.test_clip)):
        segments = _segments(ids)
        assert len(segments) > 8
        for start, stop in segments[:-1]:  # the last train clip may be cut by the stream's end
            clip_id = ids[start]
            n_blank = int(round(0.5 * len(lib.clips[clip_id // 8][clip_id % 8])))
            assert np.all(stream_blank[start:start + n_blank] == 0)
            np.testing.assert_array_equal(stream_blank[start + n_blank:stop], stream_plain[start + n_blank:stop])
            assert np.any(stream_plain[start:start + n_blank] > 0)
    assert 0.45 < float((blank.train == 0).all(axis=1).mean()) < 0.55


# ----------------------------------------------------------------------------- training arms
def test_epoch_lr_drop_and_constant_schedule_in_the_schedule():
    t = load_run_config(PARAMS / "lr_drop.yaml", preset="tiny").training
    base = learning_rates(t, "joint", 0)
    assert base == {"W": t.lr_W, "g_phi": t.lr, "f_theta": t.lr, "embedding": t.lr_embedding}
    for epoch in (1, 2):
        assert learning_rates(t, "joint", epoch) == pytest.approx({k: 0.1 * v for k, v in base.items()})
    two = load_run_config(PARAMS / "two_stage.yaml", preset="tiny",
                          overrides={"training.epoch_lr_ratio": 0.5}).training
    assert learning_rates(two, "V_rest", 1)["W"] == pytest.approx(two.lr_W * 0.1 * 0.5)
    assert learning_rates(two, "V_rest", 1)["f_theta"] == pytest.approx(two.lr * 0.5)
    held = load_run_config(PARAMS / "two_stage_constant_schedule.yaml", preset="tiny").training
    per_epoch = load_run_config(PARAMS / "two_stage.yaml", preset="tiny").training
    assert coefficients(held, 1) == coefficients(held, 3) == coefficients(per_epoch, 0)
    assert coefficients(held, 1)["W_L1"] == 0 and coefficients(held, 1)["W_L2"] > 0
    assert coefficients(per_epoch, 1)["W_L1"] > 0 and coefficients(per_epoch, 1)["f_theta_L1"] > 0


@pytest.mark.parametrize("stacked", [False, True], ids=["alone", "stacked"])
def test_training_applies_the_lr_drop_and_the_held_schedule(tiny_dataset, tmp_path, stacked):
    """Per optimiser step: epoch 2's learning rates are 0.1 x epoch 1's under lr_drop, and the
    constant schedule logs epoch 0's coefficients in both epochs; alone and in a stack."""
    import json

    from flyvis_study.stacking.train import train_stack
    from flyvis_study.train.loop import train

    over = {"training.iterations_fraction": 0.003}
    cfgs = [load_run_config(PARAMS / "lr_drop.yaml", preset="tiny", overrides=over),
            load_run_config(PARAMS / "two_stage_constant_schedule.yaml", preset="tiny", overrides=over)]
    dirs = [tmp_path / "lr_drop", tmp_path / "held"]
    seen: dict[int, dict] = {0: {}, 1: {}}
    if stacked:
        def record(replica, epoch, it, phase, opt):
            seen[replica].setdefault((epoch, phase), {g["name"]: g["lr"] for g in opt.param_groups})

        train_stack(cfgs, [tiny_dataset] * 2, dirs, progress=False, step_callback=record)
    else:
        for r, (cfg, d) in enumerate(zip(cfgs, dirs)):
            def record(epoch, it, phase, opt, r=r):
                seen[r].setdefault((epoch, phase), {g["name"]: g["lr"] for g in opt.param_groups})

            train(cfg, tiny_dataset, d, progress=False, step_callback=record)
    first, second = seen[0][(0, "joint")], seen[0][(1, "joint")]
    assert set(first) == {"W", "g_phi", "f_theta", "embedding"}
    assert second == pytest.approx({k: 0.1 * v for k, v in first.items()})
    assert seen[1][(1, "V_rest")] == seen[1][(0, "V_rest")]  # two-stage, no drop
    logged = json.loads((dirs[1] / "coefficients.json").read_text())
    assert [row["epoch"] for row in logged] == [0, 1]
    assert {k: v for k, v in logged[1].items() if k != "epoch"} == {k: v for k, v in logged[0].items()
                                                                    if k != "epoch"}
    assert logged[1]["W_L1"] == 0.0


# ----------------------------------------------------------------------------- identity-line R2
def test_identity_r2_oracles():
    rng = np.random.default_rng(0)
    true = rng.normal(0, 1, 500)
    assert r2_identity(true, true, 0.5) == (1.0, 0.0)
    shifted = true + 0.1  # every point an inlier; SS_res = n * 0.01
    r2, share = r2_identity(true, shifted, 0.5)
    assert r2 == pytest.approx(1 - 500 * 0.01 / ((true - true.mean()) ** 2).sum()) and share == 0
    assert r2_affine(true, shifted)[0] == pytest.approx(1.0)  # an offset is invisible to the affine R2
    doubled = 2 * true
    r2_aff, slope = r2_affine(true, doubled)
    assert r2_aff == pytest.approx(1.0) and slope == pytest.approx(2.0)
    inliers = np.abs(doubled - true) <= 5
    assert r2_identity(true, doubled, 5)[0] < 1.0 and inliers.all()
    wild = true.copy()
    wild[:50] += 10  # 10 % outliers, excluded from the identity R2 and counted
    r2, share = r2_identity(true, wild, 0.5)
    assert r2 == pytest.approx(1.0) and share == pytest.approx(0.1)
    assert r2_affine(true, wild)[0] < 0.5
    worse = true.mean() + 2 * (true - true.mean()) * -1  # anti-correlated: identity R2 below 0
    assert r2_identity(true, worse, 100)[0] < 0
    nan, none = r2_identity(np.array([1.0]), np.array([1.0]), 1)
    assert math.isnan(nan) and none == 0
    assert all(math.isnan(x) for x in r2_identity(np.array([np.nan]), np.array([1.0]), 1))


def test_metrics_carry_both_definitions_and_the_inlier_rule():
    rng = np.random.default_rng(1)
    v = rng.normal(0, 0.3, 200)
    types = np.arange(200) % 10
    v = v[types]  # one V_rest per type
    hat = v + 0.05
    hat[:20] = 3.0
    out = vrest_metrics(v, hat, types, threshold=0.5)
    assert out["V_rest_outlier_share"] == pytest.approx(0.1) and out["V_rest_inlier_threshold"] == 0.5
    assert out["V_rest_R2_identity"] == pytest.approx(1 - 180 * 0.05 ** 2 / ((v[20:] - v[20:].mean()) ** 2).sum())
    tau = rng.uniform(0.02, 0.3, 100)
    out = tau_metrics(tau, np.clip(tau * 1.5, 0, 1), threshold=0.1)
    assert out["tau_R2"] == pytest.approx(1.0) and out["tau_R2_identity"] < 1
    assert out["tau_outlier_threshold"] == 0.1 and 0 < out["tau_outlier_share"] < 1


@pytest.mark.slow
def test_run_files_from_before_the_identity_r2_combine_with_new_ones(tmp_path):
    """A run file from before the identity R2 (a committed small example run without those
    variables) and a new one combine: the old run reads NaN for the new variables."""
    import xarray as xr

    from flyvis_study.study.results import combine_runs
    from flyvis_study.study.run import run_one

    committed = xr.load_dataset(REPO / "reports" / "examples" / "small" / "runs" / "s2_t2__94c81600" / "run.nc",
                                engine=NETCDF_ENGINE)
    committed = committed.assign_coords(config=["gold_standard"], arm=("config", ["gold_standard"]))
    later = [v for v in committed.data_vars if "identity" in v or "outlier" in v]
    assert "V_rest_R2_identity" in later
    old = tmp_path / "old.nc"
    committed.drop_vars(later).to_netcdf(old, engine=NETCDF_ENGINE)
    spec = RunSpec(block=0, label="gold_standard", base_config="gold_standard.yaml", overrides=FAST, sim_seed=0,
                   train_seed=0, cache=str(tmp_path / "cache"))
    new = run_one(spec, tmp_path / "out", progress=False)
    ds = combine_runs([old, new])
    values = ds["V_rest_R2_identity"].sel(config="gold_standard")
    assert np.isnan(values.sel(sim_seed=2, train_seed=2)).all()
    assert np.isfinite(values.sel(sim_seed=0, train_seed=0)).any()
    assert np.isfinite(ds["V_rest_R2"].sel(config="gold_standard", sim_seed=2, train_seed=2)).any()


# ----------------------------------------------------------------------------- block 6 plan
def test_block_6_plans_every_arm_at_every_level_on_shared_seed_pairs():
    from flyvis_study.study.blocks import ARMS, block_parameters, plan_block
    from flyvis_study.study.parameters import BlockParameterError

    specs = plan_block(6, {"noise_level": [0.05, 0.5]})
    assert len(specs) == len(ARMS) * 2 * 2 * 4
    by_label = {s.label: s for s in specs}
    s = by_label["two_stage_constant_schedule_blank=0.5_noise=0.5"]
    assert s.base_config == "two_stage_constant_schedule.yaml"
    cfg = s.config
    assert cfg.training.regulariser_schedule == "constant" and cfg.training.alternate_training
    assert cfg.simulation.stimulus.blank_fraction == 0.5 and cfg.simulation.noise_model_level == 0.5
    assert by_label["lr_drop_blank=0_noise=0.05"].config.training.epoch_lr_ratio == 0.1
    assert {s.config.training.n_epochs for s in specs if s.label.startswith("gold_standard")} == {1}
    assert {s.config.training.n_epochs for s in specs if not s.label.startswith("gold_standard")} == {2}
    pairs = {label: sorted((x.sim_seed, x.train_seed) for x in specs if x.label == label) for label in by_label}
    assert all(p == [(0, 0), (1, 1), (2, 2), (3, 3)] for p in pairs.values())
    # the standard 1-epoch cell at blank 0 is block 0's config: the same numbers, the same dataset
    gold = next(x for x in specs if x.label == "gold_standard_blank=0_noise=0.05" and x.sim_seed == 0)
    assert gold.config.to_json() == plan_block(0, {})[0].config.to_json()
    for bad in ({"arms": ["two_stage", "two_stage"]}, {"arms": ["fast"]}, {"arms": []},
                {"blank_fraction": [1.0]}):
        with pytest.raises(BlockParameterError) as err:
            plan_block(6, block_parameters(6, **bad)) if "blank_fraction" in bad else block_parameters(6, **bad)
        assert "\n" not in str(err.value) and "block 6" in str(err.value)


def test_block_6_arm_levels_narrow_one_arm_to_an_incomplete_factorial():
    from flyvis_study.study.blocks import block_parameters, plan_block
    from flyvis_study.study.parameters import BlockParameterError

    specs = plan_block(6, {"arms": ["gold_standard", "two_stage", "lr_drop"],
                           "arm_levels": {"lr_drop": {"blank_fraction": 0}}})
    labels = sorted({s.label for s in specs})
    assert labels == ["gold_standard_blank=0.5_noise=0.05", "gold_standard_blank=0_noise=0.05",
                      "lr_drop_blank=0_noise=0.05", "two_stage_blank=0.5_noise=0.05",
                      "two_stage_blank=0_noise=0.05"]
    assert len(specs) == 5 * 4
    # the narrowed arm's cell is the full factorial's cell: the same run ids, so runs are shared
    full = {s.run_id for s in plan_block(6, {"arms": ["gold_standard", "two_stage", "lr_drop"]})}
    assert {s.run_id for s in specs} <= full
    for bad, words in (({"arm_levels": {"lr_drop": {"blank": [0]}}}, "unknown axis blank; allowed: blank_fraction"),
                       ({"arms": ["two_stage"], "arm_levels": {"lr_drop": {"blank_fraction": [0]}}},
                        "lr_drop not among the arms"),
                       ({"arm_levels": {"lr_drop": {"blank_fraction": []}}}, "give at least one value"),
                       ({"arm_levels": {"lr_drop": {"noise_level": [True]}}}, "not true/false"),
                       ({"arm_levels": {"lr_drop": {"noise_level": ["high"]}}}, "lr_drop.noise_level: numbers"),
                       ({"arm_levels": ["lr_drop"]}, "a mapping {arm: {axis: [values]}}")):
        with pytest.raises(BlockParameterError) as err:
            block_parameters(6, **bad)
        message = str(err.value)
        assert "\n" not in message and message.startswith("block 6: arm_levels") and words in message
    expected = r"blank_fraction \(config key simulation.stimulus.blank_fraction\): Input should be less than 1"
    with pytest.raises(BlockParameterError, match=expected):
        plan_block(6, {"arm_levels": {"lr_drop": {"blank_fraction": [1.0]}}})
