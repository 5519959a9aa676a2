"""The seed's two files of an exploration: the analysis log (append-only) and the working memory.

``<name>_analysis.md``: one seed-format entry per finished or failed run, in trial order
(``## Iter k``: Node id and parent, Mode/Strategy, Seeds, Config, Metrics, R2 definitions and
readouts, R2 trajectory, Embedding, Mutation, Parent rule, Observation, Variance update, Next).
The run's own lines are the block logs' (``study.analysis_log.run_lines``). An entry missing
after an interruption is written on the next call, so the log never skips a run.

``<name>_memory.md``: rewritten after every run: what is established (the reference on the seed
pairs used, the nodes run), the current best node against the reference on shared seeds (paired
difference, t interval, exact sign-flip p), the best nodes with their replicate statistics and
CV, what each mutation did to the objective and connectivity_R2 (child - parent on the seed
pairs they share), and what is still open.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from flyvis_study.atomic import write_text_atomic
from flyvis_study.exploration.history import History, NodeStats, TrialRecord
from flyvis_study.exploration.proposers import Proposal
from flyvis_study.study.analysis_log import cv_text, fmt, run_lines
from flyvis_study.study.comparison import compare_pairs
from flyvis_study.study.results import combine_runs, runs_table


def analysis_path(out_dir: Path, name: str) -> Path:
    return Path(out_dir) / f"{name}_analysis.md"


def memory_path(out_dir: Path, name: str) -> Path:
    return Path(out_dir) / f"{name}_memory.md"


def write_logs(params, history: History, number: int, nxt: Proposal | str, out_dir: Path) -> None:
    """Append every missing entry of the analysis log (``number``: the run just told), rewrite the memory."""
    path = analysis_path(out_dir, params.name)
    existing = path.read_text() if path.exists() else ""
    runs = history.runs
    new = []
    for k, t in enumerate(runs, start=1):
        if t.state not in ("complete", "failed") or f"## Iter {k}:" in existing:
            continue
        later = [u for u in runs[k:]]
        upcoming = later[0] if later else (nxt if t.number == number else None)
        new.append(entry(params, history, k, t, upcoming, out_dir))
    if new:
        with open(path, "a") as fh:
            fh.write("\n\n".join(new) + "\n\n")
    write_text_atomic(memory_path(out_dir, params.name), memory(params, history))


def entry(params, history: History, k: int, t: TrialRecord, upcoming, out_dir: Path) -> str:
    """The seed-format entry of run ``k`` (trial ``t``); ``upcoming``: the next run's trial or proposal."""
    run_dir = Path(out_dir) / "runs"
    ds = combine_runs([run_dir / t.run_id / "run.nc"])
    r = runs_table(ds).iloc[0]
    lines = run_lines(ds, r, run_dir)
    same = [u for u in history.finished if u.node == t.node and u.number <= t.number]
    feasible = history.constraint(t) <= 0
    status = r["status"] if t.state == "complete" else "failed"
    observation = (f"{lines[-1]}; {params.objective} {fmt(t.objective)} vs {params.reference} "
                   f"{fmt(t.reference_objective)} on the same seeds; connectivity_R2 {fmt(t.conn)} vs "
                   f"{fmt(t.reference_conn)} ({'feasible' if feasible else 'infeasible'}: tolerance "
                   f"{params.tolerance:g})")
    return "\n".join([
        f"## Iter {k}: {status}",
        f"Node: id={t.node}, parent={'root' if t.parent is None else t.parent}",
        f"Mode/Strategy: exploration {params.name}, proposer {params.proposer}; objective: maximise "
        f"{params.objective} subject to connectivity_R2 >= {params.reference}'s - {params.tolerance:g}; "
        f"replicate {t.replicate} of node {t.node}",
        *lines[:-1],
        f"Mutation: {t.mutation}",
        f"Parent rule: {t.rule}",
        observation,
        f"Variance update: node {t.node} now has {len(same)} runs, CV(conn_R2)="
        f"{cv_text([u.conn for u in same])}, CV({params.objective})={cv_text([u.objective for u in same])}",
        f"Next: {_next(upcoming)}",
    ])


def _next(upcoming) -> str:
    if upcoming == "budget":
        return "none (the budget of runs is spent)"
    if upcoming == "exhausted":
        return "none (every node has run max_replicates times)"
    if upcoming is None:
        return "parent=pending (the next proposal waits for runs in flight)"
    if isinstance(upcoming, Proposal):
        if upcoming.levels is None:
            return "parent=the nearest node to the sampler's next proposal"
        return f"parent={'root' if upcoming.parent is None else upcoming.parent}"
    return f"parent={'root' if upcoming.parent is None else upcoming.parent}"


# ----------------------------------------------------------------------------- working memory
def memory(params, history: History) -> str:
    """The working memory (module docstring), as markdown."""
    space = history.space
    stats = history.stats()
    done = history.finished
    best = history.best()
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# {params.name}: working memory", "",
             f"Rewritten after run {len(history.runs)} of {params.budget} ({when}). Proposer `{params.proposer}`; "
             f"objective: maximise {params.objective} (affine R2) subject to connectivity_R2 >= the "
             f"`{params.reference}` run's on the same seed pair - {params.tolerance:g}; seed mode "
             f"{params.seed_mode}; preset `{params.preset}`; base config `{params.base_config}`.", "",
             "Space: " + "; ".join(f"{p.name} ({p.key}) in {list(p.values)}" for p in space.parameters)
             + f"; root {space.as_dict(space.root)}.", "", "## Established", ""]
    pairs = sorted({(t.sim_seed, t.train_seed) for t in done})
    ref = {(t.sim_seed, t.train_seed): (t.reference_objective, t.reference_conn) for t in done}
    if pairs:
        lines.append(f"- The reference `{params.reference}` on the {len(pairs)} seed pair(s) used "
                     f"{pairs}: {params.objective} mean {fmt(np.mean([ref[p][0] for p in pairs]))}, "
                     f"connectivity_R2 mean {fmt(np.mean([ref[p][1] for p in pairs]))}.")
    n_failed = sum(1 for t in history.runs if t.state == "failed")
    lines.append(f"- {len({t.node for t in history.runs})} of the space's {space.size} nodes run, in "
                 f"{len(history.runs)} runs ({n_failed} failed); "
                 f"{sum(1 for s in stats.values() if s.n and s.feasible)} node(s) feasible.")
    lines += ["", "## Current best", ""]
    if best is None:
        lines.append("No feasible node yet.")
    else:
        lines.append(f"Node {best.node} ({_config(space, best)}): {params.objective} {fmt(best.mean)} "
                     f"(sd {fmt(best.sd)}, CV {cv_text(_values(history, best.node))}) over {best.n} run(s); "
                     f"connectivity_R2 {fmt(best.conn)}.")
        lines.append("")
        lines.append(f"Against `{params.reference}` on the same seed pairs: {_versus_reference(params, history, best)}")
    lines += ["", "## Best nodes", "",
              f"| node | parent | config | runs | {params.objective} mean | sd | CV | conn_R2 mean | CV conn | "
              "feasible |", "|---|---|---|---|---|---|---|---|---|---|"]
    ranked = sorted((s for s in stats.values() if s.n), key=lambda s: (not s.feasible, -s.mean, s.node))
    for s in ranked[:8]:
        lines.append(f"| {s.node} | {'root' if s.parent is None else s.parent} | {_config(space, s)} | {s.n} | "
                     f"{fmt(s.mean)} | {fmt(s.sd)} | {cv_text(_values(history, s.node))} | {fmt(s.conn)} | "
                     f"{cv_text([t.conn for t in done if t.node == s.node])} | {'yes' if s.feasible else 'no'} |")
    lines += ["", "## Mutations (child - parent on shared seed pairs)", "",
              f"| mutation | parent -> child | pairs | d {params.objective} mean | t interval | sign-flip p | "
              "d conn_R2 mean |", "|---|---|---|---|---|---|---|"]
    for parent, child in sorted({(t.parent, t.node) for t in done if t.parent is not None and t.parent != t.node}):
        lines.append(_mutation_row(params, history, parent, child))
    lines += ["", "## Open", ""] + [f"- {q}" for q in _open(params, history, best)]
    return "\n".join(lines) + "\n"


def _paired(history: History, a: int, b: int, attr: str) -> tuple[list, list, list]:
    """(pairs, a's values, b's values) on the seed pairs both nodes finished."""
    av = {(t.sim_seed, t.train_seed): getattr(t, attr) for t in history.finished if t.node == a}
    bv = {(t.sim_seed, t.train_seed): getattr(t, attr) for t in history.finished if t.node == b}
    pairs = sorted(set(av) & set(bv))
    return pairs, [av[p] for p in pairs], [bv[p] for p in pairs]


def _versus_reference(params, history: History, best: NodeStats) -> str:
    runs = [t for t in history.finished if t.node == best.node]
    pairs = [(t.sim_seed, t.train_seed) for t in runs]
    parts = []
    for metric, ref_attr, attr in ((params.objective, "reference_objective", "objective"),
                                   ("connectivity_R2", "reference_conn", "conn")):
        c = compare_pairs(metric, params.reference, f"node {best.node}", pairs,
                          [getattr(t, ref_attr) for t in runs], [getattr(t, attr) for t in runs])
        parts.append(f"{metric} {_describe(c)}")
    return "; ".join(parts) + "."


def _describe(c) -> str:
    text = f"{c.mean_difference:+.3f} over {c.n_pairs} pair(s)"
    if c.n_pairs >= 2:
        text += f", t interval [{c.t_low:+.3f}, {c.t_high:+.3f}], exact sign-flip p {c.sign_flip_p:.3f}"
    else:
        text += " (one pair: no interval)"
    return text


def _mutation_row(params, history: History, parent: int, child: int) -> str:
    pairs, a, b = _paired(history, parent, child, "objective")
    _, ac, bc = _paired(history, parent, child, "conn")
    mutation = history.space.mutation(history.levels(parent), history.levels(child))
    if not pairs:
        return f"| {mutation} | {parent} -> {child} | 0 | n/a | n/a | n/a | n/a |"
    c = compare_pairs(params.objective, f"node {parent}", f"node {child}", pairs, a, b)
    interval = f"[{c.t_low:+.3f}, {c.t_high:+.3f}]" if len(pairs) >= 2 else "n/a (one pair)"
    p = f"{c.sign_flip_p:.3f}" if len(pairs) >= 2 else "n/a"
    return (f"| {mutation} | {parent} -> {child} | {len(pairs)} | {c.mean_difference:+.3f} | {interval} | {p} | "
            f"{np.mean(bc) - np.mean(ac):+.3f} |")


def _open(params, history: History, best: NodeStats | None) -> list[str]:
    space = history.space
    out = []
    if best is None:
        out.append("No feasible node: is the tolerance too tight, or does every mutation cost connectivity?")
        return out
    untried = [m for c, m in space.children(best.levels) if history.node_of(c) is None]
    if untried:
        out.append(f"Neighbours of the best node not yet run: {'; '.join(untried)}.")
    if best.n < params.max_replicates:
        out.append(f"The best node has {best.n} of {params.max_replicates} replicates: its mean is not settled.")
    close = [s for s in history.stats().values() if s.n and s.feasible and s.node != best.node
             and math.isfinite(best.sd if best.n > 1 else math.nan) and s.mean >= best.mean - 2 * best.sd]
    if close:
        out.append("Within two sd of the best: nodes " + ", ".join(str(s.node) for s in close)
                   + " (replicate them before calling a winner).")
    infeasible = [s.node for s in history.stats().values() if s.n and not s.feasible]
    if infeasible:
        out.append(f"Infeasible (connectivity below the reference's - {params.tolerance:g}): nodes "
                   + ", ".join(map(str, infeasible)) + ".")
    if history.best().n < 8:
        out.append("Fewer than 8 paired seeds on the best node: no claim of an effect against the reference yet.")
    return out


def _values(history: History, node: int) -> list[float]:
    return [t.objective for t in history.finished if t.node == node]


def _config(space, s: NodeStats) -> str:
    return ", ".join(f"{k}={v}" for k, v in space.as_dict(s.levels).items())
