"""The block registry and its validated parameters (the one definition the CLI, notebooks and API use)."""

import pytest
from conftest import REPO

from flyvis_study.study.blocks import BLOCKS, block_parameters, plan_block
from flyvis_study.study.parameters import BlockParameterError
from flyvis_study.study.spec import Cell


def test_registry_defines_every_block_once():
    assert sorted(BLOCKS) == [0, 1, 2, 3, 4, 5, 6, 7, 8]
    assert [b.base_config for b in BLOCKS.values()] == ["gold_standard.yaml"] + ["two_stage.yaml"] * 5 + [
        "gold_standard.yaml"] * 3  # blocks 6-8: their first arm's config (each arm has its own)
    assert [b.baseline for b in BLOCKS.values()] == ["gold_standard", "", "", "", "", "", "gold_standard",
                                                     "gold_standard", "gold_standard"]
    assert [n for n, b in BLOCKS.items() if b.self_controlled] == [6, 7, 8]
    assert all(b.question.endswith("?") for b in BLOCKS.values())
    assert {a.name: a.key for b in BLOCKS.values() for a in b.axes} == {
        "joint_ratio": "training.alternate_joint_ratio", "lr_ratio": "training.alternate_lr_ratio",
        "n_epochs": "training.n_epochs", "augmentation_loop": "training.data_augmentation_loop",
        "blank_fraction": "simulation.stimulus.blank_fraction", "noise_level": "simulation.noise_model_level",
        "budget": "training.iterations_fraction"}
    assert BLOCKS[3].notebook == "block3.ipynb"


def test_block7_design_is_an_incomplete_factorial_with_fewer_pairs_where_asked():
    """Block 7's defaults are the design of the V_rest issue: 8 pairs for the four core arms at
    blank 0, 4 for the observed-target arms and for every cell at blank 0.5, nothing else."""
    specs = plan_block(7, {"preset": "small"})
    count: dict = {}
    for s in specs:
        count[(s.arm, s.factors["blank_fraction"])] = count.get((s.arm, s.factors["blank_fraction"]), 0) + 1
    assert count == {("gold_standard", 0.0): 8, ("two_stage_constant_schedule", 0.0): 8,
                     ("standard_2_epochs_constant_schedule", 0.0): 8, ("silent_anchor", 0.0): 8,
                     ("observed_target", 0.0): 4, ("silent_anchor_observed_target", 0.0): 4,
                     ("gold_standard", 0.5): 4, ("silent_anchor", 0.5): 4, ("observed_target", 0.5): 4}
    pairs = {s.replicate: (s.sim_seed, s.train_seed) for s in specs}
    assert all(pairs[s.replicate] == (s.sim_seed, s.train_seed) for s in specs)  # shared pairs: paired cells
    assert {s.replicate for s in specs if s.arm == "observed_target"} == {0, 1, 2, 3}  # the first pairs
    assert len({s.run_id for s in specs}) == 52
    small = plan_block(7, {"arms": ["gold_standard"], "replicates": 2,
                           "level_replicates": {"blank_fraction": {0.5: 1}}})
    assert [(s.factors["blank_fraction"], s.replicate) for s in small] == [(0.0, 0), (0.0, 1), (0.5, 0)]
    for bad, message in (({"arm_replicates": {"lr_drop": 2}}, "arm_replicates: lr_drop not among the arms"),
                         ({"level_replicates": {"noise": {0.5: 2}}}, "level_replicates: unknown axis noise"),
                         ({"arm_replicates": {"gold_standard": 0}}, "must be >= 1")):
        with pytest.raises(BlockParameterError, match=message):
            block_parameters(7, **bad)


def test_block8_budget_levels_multiply_the_presets_iterations_and_reuse_block7s_runs():
    """Block 8's budget level k sets training.iterations_fraction to k x the preset's (0.25 at
    small, 0.05 at tiny; k x 0.25 is exact in binary for k in 1, 3, 10), so level 1 is the
    preset's own budget: its runs are block 7's at blank 0 (same content, same run ids)."""
    specs = plan_block(8, {"preset": "small"})
    ladder = sorted((s.arm, s.factors["budget"], s.config.training.iterations_fraction) for s in specs
                    if s.replicate == 0)
    assert ladder == [("gold_standard", 1.0, 0.25), ("gold_standard", 3.0, 0.75), ("gold_standard", 10.0, 2.5),
                      ("two_stage_constant_schedule", 1.0, 0.25), ("two_stage_constant_schedule", 3.0, 0.75)]
    assert len(specs) == 10 and {s.replicate for s in specs} == {0, 1}
    seven = {(s.arm, s.sim_seed, s.train_seed): s.run_id for s in plan_block(7, {"preset": "small"})
             if s.factors["blank_fraction"] == 0.0}
    assert {s.run_id for s in specs if s.factors["budget"] == 1.0} == {
        seven[(s.arm, s.sim_seed, s.train_seed)] for s in specs if s.factors["budget"] == 1.0}
    tiny = plan_block(8, {"preset": "tiny", "arms": ["gold_standard"], "budget": [3], "replicates": 1})
    assert [s.config.training.iterations_fraction for s in tiny] == [3 * 0.05]
    with pytest.raises(BlockParameterError, match=r"budget \(config key training.iterations_fraction\)"):
        plan_block(8, {"preset": "small", "budget": [50]})  # 12.5 > the config's bound of 10
    with pytest.raises(BlockParameterError, match="budget .* Input should be greater than 0"):
        plan_block(8, {"budget": [0]})


def test_default_grids_and_labels():
    labels = {n: [c.label for c in b.cells(block_parameters(n))] for n, b in BLOCKS.items()}
    assert labels[0] == ["gold_standard"] and labels[1] == ["two_stage"]
    assert labels[2] == ["joint_ratio=0.2", "joint_ratio=0.3", "joint_ratio=0.4", "joint_ratio=0.5"]
    assert labels[3] == ["lr_ratio=0.01", "lr_ratio=0.05", "lr_ratio=0.1", "lr_ratio=0.2"]
    assert labels[4] == [f"epochs={e}_aug={a}" for e in (2, 3) for a in (20, 25, 30)]
    assert labels[5] == ["two_stage"]
    cells = BLOCKS[4].cells(block_parameters(4, n_epochs=3, augmentation_loop=[25]))
    assert cells == [Cell("epochs=3_aug=25", "two_stage", "two_stage.yaml",
                          {"training.n_epochs": 3, "training.data_augmentation_loop": 25},
                          {"epochs": 3, "augmentation_loop": 25})]
    assert BLOCKS[5].cells(block_parameters(5, best_config={"training.alternate_lr_ratio": 0.05})) == [
        Cell("best", "best", "two_stage.yaml", {"training.alternate_lr_ratio": 0.05})]
    six = BLOCKS[6].cells(block_parameters(6, arms=["two_stage"], blank_fraction=[0.5]))
    assert six == [Cell("two_stage_blank=0.5_noise=0.05", "two_stage", "two_stage.yaml",
                        {"simulation.stimulus.blank_fraction": 0.5, "simulation.noise_model_level": 0.05},
                        {"blank_fraction": 0.5, "noise_level": 0.05})]


def test_plan_resolves_every_config_with_the_axis_value():
    specs = plan_block(3, {"lr_ratio": [0.05, 0.2], "replicates": 2})
    assert [(s.label, s.sim_seed) for s in specs] == [("lr_ratio=0.05", 0), ("lr_ratio=0.05", 1),
                                                      ("lr_ratio=0.2", 0), ("lr_ratio=0.2", 1)]
    assert [s.config.training.alternate_lr_ratio for s in specs] == [0.05, 0.05, 0.2, 0.2]
    assert all(s.config.training.alternate_training for s in specs)
    assert not plan_block(0, {})[0].config.training.alternate_training


@pytest.mark.parametrize("number,values,needle", [
    (1, {"replicates": True}, "replicates: Input should be a valid integer"),
    (1, {"replicates": 0}, "greater than or equal to 1"),
    (1, {"lr_ratio": [0.1]}, "lr_ratio: unknown parameter"),  # not an axis of block 1
    (3, {"lr_ratio": [True]}, "numbers required"),
    (2, {"joint_ratio": []}, "give at least one value"),
    (1, {"seed_mode": "both", "sim_seeds": [1]}, "give both or neither"),
    (9, {}, "block 9: unknown"),
])
def test_bad_parameters_raise_one_line(number, values, needle):
    with pytest.raises(BlockParameterError, match=None) as err:
        block_parameters(number, **values)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_bad_config_values_fail_in_the_plan_with_the_key():
    with pytest.raises(BlockParameterError, match="alternate_joint_ratio"):
        plan_block(2, {"joint_ratio": [0.4, 1.5]})
    with pytest.raises(BlockParameterError, match="training.nope: unknown key"):
        plan_block(1, {"overrides": {"training.nope": 1}})


def test_factor_coordinates_never_take_a_run_variables_name():
    """A cell's factors become coordinates beside the run variables (study.record): a factor named
    like a variable (block 4's n_epochs axis) would collide in the run file, so it is renamed."""
    from flyvis_study.study.record import EXTRA_METRICS, RECORD_STRINGS, RUN_METRICS

    factors = {a.factor for b in BLOCKS.values() for a in b.axes} | {"arm"}
    assert not factors & {*RUN_METRICS, *EXTRA_METRICS, *RECORD_STRINGS, "replicate"}
    assert BLOCKS[4].axes[0].factor == "epochs" and BLOCKS[6].axes[0].factor == "blank_fraction"


def test_every_arm_has_the_name_of_its_config_file():
    """One name per config: an arm is params/<arm>.yaml in every block (schema 3)."""
    arms = {arm for b in BLOCKS.values() for arm in b.arms}
    assert {"gold_standard", "two_stage"} <= arms and not arms & {"standard", "standard_1_epoch", "two_stage_default"}
    for arm in arms:
        assert BLOCKS[0].config_of(arm) == f"{arm}.yaml" and (REPO / "params" / f"{arm}.yaml").is_file(), arm
