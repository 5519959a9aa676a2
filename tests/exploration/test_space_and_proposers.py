"""The search space and the proposers, on hand-made histories (no training)."""

import math

import pytest

from flyvis_study.exploration.history import History, TrialRecord
from flyvis_study.exploration.proposers import REPLICATE_BEST, Exhausted, SeedRule, UCBTree
from flyvis_study.exploration.space import SEED_SPACE, SpaceError, build_space

# a module-scoped fixture is built once per process: under `pytest -n N --dist loadgroup` the
# module stays on one worker, so it is built once
pytestmark = pytest.mark.xdist_group(__name__)

SPACE = {"alternate_lr_ratio": [0.05, 0.1, 0.2], "alternate_joint_ratio": [0.3, 0.4, 0.5]}


@pytest.fixture(scope="module")
def space():
    return build_space(SPACE, "two_stage.yaml", "tiny")


def test_default_space_is_the_seeds_explorable_set_and_the_root_is_the_base_config():
    space = build_space(None, "two_stage.yaml", "tiny")
    assert space.names == list(SEED_SPACE)
    assert space.size == 5 * 5 * 2 * 3
    assert space.as_dict(space.root) == {"alternate_joint_ratio": 0.4, "alternate_lr_ratio": 0.1, "n_epochs": 2,
                                         "data_augmentation_loop": 20}


def test_neighbours_move_one_parameter_one_step(space):
    children = dict(space.children(space.root))
    assert set(children) == {(0.05, 0.4), (0.2, 0.4), (0.1, 0.3), (0.1, 0.5)}
    assert children[(0.05, 0.4)] == "alternate_lr_ratio: 0.1 -> 0.05"
    corner = dict(space.children((0.05, 0.3)))
    assert set(corner) == {(0.1, 0.3), (0.05, 0.4)}
    assert space.distance((0.05, 0.3), (0.2, 0.5)) == 4
    assert space.overrides((0.2, 0.5)) == {"training.alternate_lr_ratio": 0.2, "training.alternate_joint_ratio": 0.5}


@pytest.mark.parametrize("bad, words", [
    ({"lr_ratoi": [0.1]}, "unknown parameter 'lr_ratoi'"),
    ({"alternate_lr_ratio": []}, "space.alternate_lr_ratio: a non-empty list"),
    ({"alternate_lr_ratio": [0.1, 0.1]}, "each value once"),
    ({"training.no_such_key": [1]}, "space.training.no_such_key=1"),
    ({"n_epochs": [0]}, "space.n_epochs=0"),
    ({}, "at least one parameter"),
])
def test_a_bad_space_is_one_line_naming_the_entry(bad, words):
    with pytest.raises(SpaceError) as err:
        build_space(bad, "two_stage.yaml", "tiny")
    assert words in str(err.value) and "\n" not in str(err.value)


def _trial(number, node, parent, levels, objective, conn=0.9, ref_conn=0.9, state="complete", rule="", seed=0,
           stage=0):
    return TrialRecord(number=number, node=node, parent=parent, levels=levels, mutation="", rule=rule,
                       sim_seed=seed, train_seed=seed, replicate=seed, run_id=f"r{number}", state=state,
                       objective=objective, conn=conn, reference_conn=ref_conn, reference_objective=0.2,
                       stage=stage)


def test_node_statistics_feasibility_and_best(space):
    h = History([_trial(0, 0, None, space.root, 0.20),
                 _trial(1, 1, 0, (0.2, 0.4), 0.35, conn=0.85),  # conn 0.05 below the reference: infeasible
                 _trial(2, 2, 0, (0.1, 0.5), 0.25),
                 _trial(3, 2, 0, (0.1, 0.5), 0.27, seed=1)], space, tolerance=0.02)
    stats = h.stats()
    assert not stats[1].feasible and stats[2].feasible and stats[2].n == 2
    assert stats[2].mean == pytest.approx(0.26) and stats[2].sd == pytest.approx(math.sqrt(2e-4))
    assert stats[1].reward == pytest.approx(0.35 - 1.0)  # the infeasible penalty
    assert h.best().node == 2
    assert h.best_so_far() == pytest.approx([0.20, 0.20, 0.25, 0.26])


def test_ucb_replicates_the_best_then_mutates_the_highest_scoring_node(space):
    ucb = UCBTree(max_replicates=4, sampler_seed=0, ucb_c=0.05)
    empty = History([], space, 0.02)
    assert ucb.propose(empty).levels == space.root
    h = History([_trial(0, 0, None, space.root, 0.20)], space, 0.02)
    first = ucb.propose(h)  # the root is the best node with one run: replicate it
    assert first.levels == space.root and first.parent == 0 and "replicate" in first.rule
    h = History(h.trials + [_trial(1, 0, 0, space.root, 0.22, seed=1)], space, 0.02)
    second = ucb.propose(h)
    assert second.parent == 0 and second.levels in dict(space.children(space.root))
    assert ucb.propose(h) == second  # pure: the same history, the same proposal
    running = History([_trial(0, 0, None, space.root, math.nan, state="running")], space, 0.02)
    assert ucb.propose(running) is None  # nothing to rank until the root has finished


def test_ucb_is_exhausted_when_every_node_has_its_replicates(space):
    ucb = UCBTree(max_replicates=1)
    trials = [_trial(k, k, None if k == 0 else 0, levels, 0.2 + 0.01 * k) for k, levels in enumerate(space.all_nodes())]
    with pytest.raises(Exhausted):
        ucb.propose(History(trials, space, 0.02))


def test_seed_rule_runs_the_seeds_block_partition_as_coordinate_ascent(space):
    rule = SeedRule(max_replicates=3)
    trials = []

    def step(objective):
        h = History(trials, space, 0.02)
        p = rule.propose(h)
        node = h.node_of(p.levels)
        node = h.next_node_id() if node is None else node
        trials.append(_trial(len(trials), node, p.parent, p.levels, objective, rule=p.rule, stage=p.stage,
                             seed=sum(1 for t in trials if t.node == node)))
        return p

    assert step(0.20).levels == space.root  # the root
    assert "stage 0" in step(0.22).rule  # baseline: the root replicated (REPLICATE_BEST runs)
    assert REPLICATE_BEST == 2
    lr = [step(x) for x in (0.30, 0.10)]  # stage 1: the other lr ratios from the root
    assert [p.levels for p in lr] == [(0.05, 0.4), (0.2, 0.4)] and all("stage 1" in p.rule for p in lr)
    joint = [step(x) for x in (0.25, 0.28)]  # stage 2: the joint ratios from the best node (lr 0.05)
    assert [p.levels for p in joint] == [(0.05, 0.3), (0.05, 0.5)] and joint[0].parent == 1
    rep = step(0.31)  # stage 3: replicate the best node (0.05, 0.4) to max_replicates
    assert rep.levels == (0.05, 0.4) and "replicate the best" in rep.rule
    h = History(trials[:-1] + [_trial(len(trials) - 1, 1, 1, (0.05, 0.4), math.nan, state="running",
                                        rule=rep.rule, stage=rep.stage, seed=1)], space, 0.02)
    assert rule.propose(h).levels == (0.05, 0.4)  # the stage's next replicate does not wait
