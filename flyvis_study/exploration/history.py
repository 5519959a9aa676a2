"""The exploration's history: its trials (read from the Optuna study) and its nodes.

A trial is one run of one node on one seed pair; its Optuna user attributes hold the node, its
parent, the mutation, the parent rule, the seeds and the run id (set when it is asked), and the
run's metrics with those of the reference run on the same seed pair (set when it is told).

Per node, over its finished trials (n of them): the mean objective, the mean connectivity_R2 and
the reference's mean on the same seed pairs. The constraint of a trial is
``c = reference conn_R2 - tolerance - conn_R2`` (feasible: c <= 0); a node is feasible when its
mean c <= 0. Its UCB reward is its mean objective, minus 1 when it is infeasible (an R2 is at
most 1, so every feasible node ranks above every infeasible one with a similar objective).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import optuna

from flyvis_study.exploration.space import Levels, SearchSpace

INFEASIBLE_PENALTY = 1.0


@dataclass(frozen=True)
class TrialRecord:
    """One trial: ``state`` is complete, running, failed (the run failed: no objective) or
    duplicate (a sampler's re-proposal of a node already run ``max_replicates`` times: no run)."""

    number: int
    node: int
    parent: int | None
    levels: Levels
    mutation: str
    rule: str
    sim_seed: int
    train_seed: int
    replicate: int
    run_id: str
    state: str
    objective: float = math.nan
    conn: float = math.nan
    reference_conn: float = math.nan
    reference_objective: float = math.nan
    metrics: dict = field(default_factory=dict)
    status: str = ""
    stage: int = 0  # the seed rule's stage of the trial (``exploration.proposers.SeedRule``)

    @property
    def finished(self) -> bool:
        return self.state == "complete" and math.isfinite(self.objective)

    @property
    def constraint(self) -> float:
        return self.reference_conn - self.conn  # minus the tolerance: ``History.constraint``


@dataclass(frozen=True)
class NodeStats:
    """A node's statistics over its finished trials (module docstring)."""

    node: int
    levels: Levels
    parent: int | None
    n: int
    n_asked: int
    mean: float
    sd: float
    conn: float
    reference_conn: float
    reference_objective: float
    feasible: bool

    @property
    def reward(self) -> float:
        return self.mean - (0.0 if self.feasible else INFEASIBLE_PENALTY)


class History:
    """The trials of an exploration, in trial order, and their nodes."""

    def __init__(self, trials: list[TrialRecord], space: SearchSpace, tolerance: float):
        self.trials = trials
        self.space = space
        self.tolerance = tolerance

    @classmethod
    def from_study(cls, study: optuna.Study, space: SearchSpace, tolerance: float) -> History:
        records = [record_of(t, space) for t in study.get_trials(deepcopy=False)]
        return cls([r for r in records if r is not None], space, tolerance)

    @property
    def runs(self) -> list[TrialRecord]:
        """Trials that are (or were) runs: every state but duplicate."""
        return [t for t in self.trials if t.state != "duplicate"]

    @property
    def finished(self) -> list[TrialRecord]:
        return [t for t in self.trials if t.finished]

    def node_of(self, levels: Levels) -> int | None:
        for t in self.trials:
            if t.levels == levels:
                return t.node
        return None

    def next_node_id(self) -> int:
        return 1 + max((t.node for t in self.trials), default=-1)

    def levels(self, node: int) -> Levels:
        return next(t.levels for t in self.trials if t.node == node)

    def asked(self, node: int) -> int:
        """Runs asked of a node (finished, failed or still running): its next replicate index."""
        return sum(1 for t in self.runs if t.node == node)

    def constraint(self, t: TrialRecord) -> float:
        """``reference conn_R2 - tolerance - conn_R2`` (feasible: <= 0)."""
        return t.reference_conn - self.tolerance - t.conn

    def stats(self) -> dict[int, NodeStats]:
        """Every node's statistics, by node id (nodes without a finished trial: n = 0, NaN means)."""
        out = {}
        for node in sorted({t.node for t in self.trials}):
            done = [t for t in self.finished if t.node == node]
            first = next(t for t in self.trials if t.node == node)
            obj = np.array([t.objective for t in done], dtype=float)
            c = np.array([self.constraint(t) for t in done], dtype=float)
            mean = float(obj.mean()) if obj.size else math.nan
            out[node] = NodeStats(
                node=node, levels=first.levels, parent=first.parent, n=len(done), n_asked=self.asked(node),
                mean=mean, sd=float(obj.std(ddof=1)) if obj.size > 1 else math.nan,
                conn=float(np.mean([t.conn for t in done])) if done else math.nan,
                reference_conn=float(np.mean([t.reference_conn for t in done])) if done else math.nan,
                reference_objective=float(np.mean([t.reference_objective for t in done])) if done else math.nan,
                feasible=bool(c.size and c.mean() <= 0))
        return out

    def best(self) -> NodeStats | None:
        """The feasible node with the highest mean objective (ties: more runs, then the older node)."""
        feasible = [s for s in self.stats().values() if s.n and s.feasible]
        return max(feasible, key=lambda s: (s.mean, s.n, -s.node)) if feasible else None

    def best_so_far(self) -> list[float]:
        """After each finished or failed run (in trial order): the best feasible node's mean objective then."""
        out = []
        for k, t in enumerate(self.trials):
            if t.state in ("complete", "failed"):
                out.append(History(self.trials[:k + 1], self.space, self.tolerance).best_mean())
        return out

    def best_mean(self) -> float:
        best = self.best()
        return best.mean if best is not None else math.nan


def record_of(t: optuna.trial.FrozenTrial, space: SearchSpace) -> TrialRecord | None:
    """A trial's record from its Optuna state and user attributes (None: not one of ours)."""
    a = t.user_attrs
    if "node" not in a:
        return None
    if a.get("duplicate"):
        state = "duplicate"
    elif t.state == optuna.trial.TrialState.COMPLETE:
        state = "complete"
    elif t.state == optuna.trial.TrialState.FAIL:
        state = "failed"
    else:
        state = "running"
    levels = tuple(a["levels"]) if "levels" in a else space.levels_of(t.params)
    return TrialRecord(
        number=t.number, node=int(a["node"]), parent=a.get("parent"), levels=levels, mutation=a.get("mutation", ""),
        rule=a.get("rule", ""), sim_seed=int(a.get("sim_seed", -1)), train_seed=int(a.get("train_seed", -1)),
        replicate=int(a.get("replicate", 0)), run_id=a.get("run_id", ""), state=state,
        objective=_number(a, "objective"), conn=_number(a, "conn"), reference_conn=_number(a, "reference_conn"),
        reference_objective=_number(a, "reference_objective"),
        metrics=dict(a.get("metrics", {})), status=a.get("status", ""), stage=int(a.get("stage", 0)))


def _number(attrs: dict, key: str) -> float:
    """A stored number (NaN is stored as None: JSON)."""
    value = attrs.get(key)
    return math.nan if value is None else float(value)
