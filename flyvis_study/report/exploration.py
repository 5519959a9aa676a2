"""The exploration's report: its notebook's parameter check, tables and figures.

``notebooks/explore_search.ipynb`` runs (or resumes) an exploration and shows: the working
memory (``exploration.logs``), the trial history, the objective over runs with the best feasible
node so far, the tree of nodes, and the best node against the reference on shared seed pairs.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython import get_ipython

from flyvis_study.exploration.history import History
from flyvis_study.exploration.parameters import ExploreParameterError, ExploreParameters, explore_parameters
from flyvis_study.exploration.search import Exploration, open_study
from flyvis_study.exploration.space import build_space
from flyvis_study.report.block_report import IPYTHON_NAMES
from flyvis_study.world.connectome_file import connectome_problem


def notebook_parameters(given: list[str], namespace: dict) -> ExploreParameters:
    """The validated parameters from the notebook's namespace (``given``: the names its parameters
    cell and papermill defined). A misspelt name, a bad value, a bad space entry or a storage
    that cannot be opened: one line (``ExploreParameterError``), before any run."""
    shell = get_ipython()
    if shell is not None:
        shell.InteractiveTB.set_mode("Minimal")
    fields = ExploreParameters.model_fields
    unknown = [name for name in given if name not in fields and name not in IPYTHON_NAMES]
    if unknown:
        raise ExploreParameterError(f"exploration: unknown parameter {', '.join(map(repr, unknown))}; allowed: "
                                    + ", ".join(fields))
    params = check_exploration(**{name: namespace[name] for name in fields})
    if shell is not None:
        shell.InteractiveTB.set_mode("Context")
    return params


def check_exploration(**values) -> ExploreParameters:
    """Every check an exploration makes before its first run: parameters, space, storage, and
    the connectome file (verified)."""
    params = explore_parameters(**values)
    try:
        build_space(params.space, params.base_config, params.preset, params.overrides)
        problem = connectome_problem()
        if problem:
            raise ExploreParameterError(problem)
        open_study(params)  # creates the study (and --out) when new: last
    except ValueError as err:  # SpaceError, StorageError
        raise ExploreParameterError(str(err)) from None
    return params


def trials_table(history: History) -> pd.DataFrame:
    """One row per run (trial order): node, parent, config, seeds, state, objective, conn, reference."""
    rows = []
    for k, t in enumerate(history.runs, start=1):
        rows.append({"run": k, "trial": t.number, "node": t.node, "parent": t.parent,
                     **history.space.as_dict(t.levels), "sim_seed": t.sim_seed, "train_seed": t.train_seed,
                     "state": t.state, "objective": t.objective, "conn_R2": t.conn,
                     "reference_objective": t.reference_objective, "reference_conn_R2": t.reference_conn,
                     "feasible": history.constraint(t) <= 0 if t.finished else None, "run_id": t.run_id})
    return pd.DataFrame(rows)


def nodes_table(history: History) -> pd.DataFrame:
    """One row per node: its config, runs, mean and sd of the objective, conn, feasibility."""
    rows = [{"node": s.node, "parent": s.parent, **history.space.as_dict(s.levels), "runs": s.n,
             "objective_mean": s.mean, "objective_sd": s.sd, "conn_R2_mean": s.conn,
             "reference_conn_R2_mean": s.reference_conn, "feasible": s.feasible}
            for s in history.stats().values()]
    return pd.DataFrame(rows).sort_values(["feasible", "objective_mean"], ascending=False)


def figure(ex: Exploration):
    """Three panels: the objective of each run with the best feasible node so far; the tree of nodes
    (x: the node's first run, y: its mean objective, size: its runs); the best node against the
    reference on each shared seed pair."""
    h, p = ex.history, ex.parameters
    runs = [t for t in h.runs if t.state in ("complete", "failed")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    x = np.arange(1, len(runs) + 1)
    y = np.array([t.objective for t in runs])
    feasible = np.array([t.finished and h.constraint(t) <= 0 for t in runs], dtype=bool)
    ax.scatter(x[feasible], y[feasible], c="C0", label="feasible run")
    ax.scatter(x[~feasible], y[~feasible], c="C3", marker="x", label="infeasible or failed run")
    ax.step(x, h.best_so_far()[:len(x)], where="post", c="k", label="best feasible node (mean)")
    ref = [t.reference_objective for t in runs if math.isfinite(t.reference_objective)]
    if ref:
        ax.axhline(np.mean(ref), c="C2", ls="--", label=f"{p.reference} (mean on the pairs used)")
    ax.set(xlabel="run", ylabel=p.objective, title="objective over runs")
    ax.legend(fontsize=7)
    ax = axes[1]
    stats = h.stats()
    first = {}
    for k, t in enumerate(h.runs, start=1):
        first.setdefault(t.node, k)
    for s in stats.values():
        if s.parent is not None and s.parent in stats and s.n and stats[s.parent].n:
            ax.plot([first[s.parent], first[s.node]], [stats[s.parent].mean, s.mean], c="0.7", lw=1, zorder=1)
    shown = [s for s in stats.values() if s.n]
    ax.scatter([first[s.node] for s in shown], [s.mean for s in shown], s=[30 + 30 * s.n for s in shown],
               c=["C0" if s.feasible else "C3" for s in shown], zorder=2)
    for s in shown:
        ax.annotate(str(s.node), (first[s.node], s.mean), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set(xlabel="first run of the node", ylabel=f"{p.objective} (node mean)", title="the tree (size: runs)")
    ax = axes[2]
    best = h.best()
    if best is not None:
        runs_b = [t for t in h.finished if t.node == best.node]
        for t in runs_b:
            ax.plot([0, 1], [t.reference_objective, t.objective], "o-", c="C0", alpha=0.7)
        ax.set_xticks([0, 1], [p.reference, f"best: node {best.node}"])
        ax.set(ylabel=p.objective, title=f"best node vs reference ({len(runs_b)} shared seed pair(s))")
    else:
        ax.text(0.5, 0.5, "no feasible node yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    fig.tight_layout()
    return fig
