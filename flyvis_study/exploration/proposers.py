"""Proposers: given the history, the next node to run, its parent and the rule that chose it.

Every proposer starts at the root (the base config's values). Then:

- ``ucb``: a UCB tree over configs. Parent = argmax over nodes of
  ``reward_i + c sqrt(ln N / n_i)`` (n_i: the node's runs, finished or in flight; N = sum n_i;
  reward: ``history``). If the parent is the best feasible node and has fewer than
  ``REPLICATE_BEST`` runs, it is replicated (its next seed pair); otherwise one parameter is
  moved one step (a neighbouring allowed value) to a node not yet run, chosen at random among
  those; a parent without such a child is replicated (up to ``max_replicates``), else the next
  parent by UCB is taken.
- ``seed_rule``: the study design's block partition as coordinate ascent. Stage 0 runs the root
  (``REPLICATE_BEST`` runs); then, one parameter at a time in the space's order, every other
  value of that parameter from the best node so far (one run each); then the best node is
  replicated to ``max_replicates`` runs; then the parameters again from the new best. A stage
  starts when the previous one has finished (its parent is the best node then).
- ``tpe``, ``gp``, ``random``: Optuna's TPESampler and GPSampler (both read the connectivity
  constraint each told trial carries, ``Trial.set_constraint``), RandomSampler, over the
  categorical space; the parent is the nearest node already
  run (fewest steps), for the logs.

``propose`` is pure: it depends on the history (and ``sampler_seed``) alone, so it also gives
the log's "Next" line, and a resumed exploration proposes what the interrupted one would have.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import optuna

from flyvis_study.exploration.history import History, NodeStats
from flyvis_study.exploration.space import Levels

STARTUP_TRIALS = 5  # random trials before TPE and GP model the history (Optuna's default is 10)
REPLICATE_BEST = 2  # runs the best node (and the seed rule's root) gets before the search moves on


@dataclass(frozen=True)
class Proposal:
    """The next trial: ``levels`` None means "ask the Optuna sampler" (tpe, gp, random)."""

    levels: Levels | None
    parent: int | None
    rule: str
    stage: int = 0


class Exhausted(Exception):  # noqa: N818 - a state, not an error
    """The proposer has nothing left to run (every node at ``max_replicates``)."""


class Proposer:
    """Base: the root first; ``sampler`` is the Optuna sampler of the study."""

    name = ""

    def __init__(self, max_replicates: int, sampler_seed: int = 0, ucb_c: float = 0.05):
        self.max_replicates = max_replicates
        self.seed = sampler_seed
        self.c = ucb_c

    @property
    def sampler(self) -> optuna.samplers.BaseSampler:
        return optuna.samplers.RandomSampler(seed=self.seed)  # unused: every trial is enqueued

    def propose(self, history: History) -> Proposal | None:
        """The next trial; None: wait for runs in flight; ``Exhausted``: nothing left."""
        if not history.runs:
            return Proposal(history.space.root, None, "the root: the base config at the preset (first run)")
        return self._propose(history)

    def _propose(self, history: History) -> Proposal | None:
        raise NotImplementedError


class UCBTree(Proposer):
    name = "ucb"

    def _propose(self, history: History) -> Proposal | None:
        stats = history.stats()
        if not any(s.n for s in stats.values()) and any(t.state == "running" for t in history.runs):
            return None  # the root is still running: no reward to rank by
        total = sum(s.n_asked for s in stats.values())
        best = history.best()
        ranked = sorted(stats.values(), key=lambda s: (-self.ucb(s, total), s.node))
        for s in ranked:
            score = f"UCB {self.ucb(s, total):.4f} = reward {s.reward:.4f} + {self.c:g} sqrt(ln {total} / {s.n_asked})"
            if best is not None and s.node == best.node and s.n_asked < min(REPLICATE_BEST, self.max_replicates):
                return Proposal(s.levels, s.node, f"UCB: node {s.node} has the highest score ({score}) and is the "
                                                  f"best feasible node with {s.n_asked} run(s): replicate it")
            children = [c for c, _ in history.space.children(s.levels) if history.node_of(c) is None]
            if children:
                rng = np.random.default_rng([self.seed, len(history.trials)])
                child = children[int(rng.integers(len(children)))]
                return Proposal(child, s.node, f"UCB: node {s.node} has the highest score ({score}); mutate one "
                                               f"parameter to a neighbouring value not yet run "
                                               f"({len(children)} such)")
            if s.n_asked < self.max_replicates:
                return Proposal(s.levels, s.node, f"UCB: node {s.node} has the highest score ({score}) and every "
                                                  f"neighbour has run: replicate it")
        raise Exhausted

    def ucb(self, s: NodeStats, total: int) -> float:
        if s.n == 0:  # in flight only: rank by the optimism alone
            return math.inf if s.n_asked == 0 else -math.inf
        return s.reward + self.c * math.sqrt(math.log(max(total, 1)) / s.n_asked)


class SeedRule(Proposer):
    name = "seed_rule"

    def _propose(self, history: History) -> Proposal | None:
        space = history.space
        n_params = len(space.parameters)
        stage, empty = 0, 0
        while True:  # walk the stages: the first with something left to ask is the current one
            in_stage = [t for t in history.runs if t.stage == stage]
            parent = self._stage_parent(history, stage, in_stage)
            if parent is None:
                return None  # the previous stage still has runs in flight
            plan = self._plan(history, stage, parent, n_params)
            if len(in_stage) < len(plan):
                levels, rule = plan[len(in_stage)]
                return Proposal(levels, history.node_of(parent) if history.node_of(parent) is not None else 0,
                                f"seed rule, stage {stage}: {rule}", stage=stage)
            if any(t.state == "running" for t in in_stage):
                return None
            empty = 0 if plan else empty + 1
            if empty > n_params + 1:  # a whole cycle of stages with nothing to run
                raise Exhausted
            stage += 1

    def _stage_parent(self, history: History, stage: int, in_stage) -> Levels | None:
        if stage == 0:
            return history.space.root
        if in_stage:  # fixed when the stage's first run was asked
            first = in_stage[0]
            return history.levels(first.parent) if first.parent is not None else history.space.root
        earlier = [t for t in history.runs if t.stage < stage]
        if any(t.state == "running" for t in earlier):
            return None
        best = History(earlier, history.space, history.tolerance).best()
        return best.levels if best is not None else history.space.root

    def _plan(self, history: History, stage: int, parent: Levels, n_params: int) -> list[tuple[Levels, str]]:
        """The stage's runs: (levels, rule), in order."""
        space = history.space
        cycle = n_params + 1
        k = (stage - 1) % cycle if stage else -1
        done_before = [t for t in history.runs if t.stage < stage]
        if stage == 0:
            return [(parent, "baseline: the root, replicated")] * min(REPLICATE_BEST, self.max_replicates)
        if k < n_params:
            p = space.parameters[k]
            i = space.names.index(p.name)
            out = []
            for value in p.values:
                child = parent[:i] + (value,) + parent[i + 1:]
                if value != parent[i] and not any(t.levels == child for t in done_before):
                    out.append((child, f"vary {p.name} from the best node so far, one value per run"))
            return out
        have = sum(1 for t in done_before if t.levels == parent)
        return [(parent, "replicate the best node so far")] * max(0, self.max_replicates - have)


# Optuna's samplers: name -> (what the Parent rule says, the sampler for a seed)
SAMPLERS = {
    "tpe": ("Optuna TPESampler (with the connectivity constraint)",
            lambda seed: optuna.samplers.TPESampler(seed=seed, n_startup_trials=STARTUP_TRIALS)),
    "gp": ("Optuna GPSampler (with the connectivity constraint)",
           lambda seed: optuna.samplers.GPSampler(seed=seed, n_startup_trials=STARTUP_TRIALS)),
    "random": ("Optuna RandomSampler (a baseline)", lambda seed: optuna.samplers.RandomSampler(seed=seed)),
}


class SamplerProposer(Proposer):
    """One of Optuna's samplers (``SAMPLERS``): the trial's levels come from ``study.ask``."""

    def __init__(self, name: str, max_replicates: int, sampler_seed: int = 0, ucb_c: float = 0.05):
        super().__init__(max_replicates, sampler_seed, ucb_c)
        self.name = name

    @property
    def sampler(self) -> optuna.samplers.BaseSampler:
        return SAMPLERS[self.name][1](self.seed)

    def _propose(self, history: History) -> Proposal | None:
        return Proposal(None, None, "")

    def describe(self, history: History, levels: Levels) -> tuple[int | None, str]:
        """(parent, rule) of a sampled node: the parent is the nearest node already run."""
        nodes = {t.node: t.levels for t in history.runs}
        parent = min(nodes, key=lambda n: (history.space.distance(nodes[n], levels), n)) if nodes else None
        return parent, f"{SAMPLERS[self.name][0]}; parent: the nearest node already run"


def make_proposer(name: str, max_replicates: int, sampler_seed: int = 0, ucb_c: float = 0.05) -> Proposer:
    """The proposer called ``name`` (``exploration.parameters.PROPOSERS``)."""
    if name in SAMPLERS:
        return SamplerProposer(name, max_replicates, sampler_seed, ucb_c)
    return {c.name: c for c in (UCBTree, SeedRule)}[name](max_replicates, sampler_seed, ucb_c)
