"""The exploration loop: propose, run, tell, log; its state in an Optuna study.

``run_exploration(parameters)`` opens (or resumes) the Optuna study ``name`` in ``storage``
(default: a SQLite file in ``out_dir``), holding ``out_dir``'s writer lock, and repeats until
``budget`` runs have been asked:

1. the proposer (``exploration.proposers``) gives the next node and its parent; the node's next
   seed pair is its replicate index r: ``study.spec.suggest_seeds(r, seed_mode, seed_base)``,
   so every node's first run shares the root's first seed pair and nodes pair up;
2. the trial is asked of the study (a node chosen by the proposer is enqueued first; Optuna's
   samplers choose their own), with the node, parent, mutation, rule, seeds and run id as user
   attributes;
3. the reference config (the gold standard) runs on the same seed pair, then the node's config:
   both are ordinary runs in ``out_dir/runs/<run_id>/`` (content-keyed, reused if finished);
4. the trial is told its objective (a failed run: state FAIL) with the constraint and the
   metrics as user attributes; the analysis log gets its entry, the memory file is rewritten.

With ``workers`` or ``scheduler``, up to that many trials are in flight on Dask (Optuna's
samplers see the others as running; the UCB tree counts them as visits). A trial left running
by an interrupted exploration on this host is run again on resume (its run resumes from its
last checkpoint). A sampler that proposes a node already run ``max_replicates`` times is told
that node's mean (a duplicate, no run, not counted in the budget).
"""

from __future__ import annotations

import math
import os
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import xarray as xr
from optuna.distributions import CategoricalDistribution

from flyvis_study.exploration.history import History
from flyvis_study.exploration.logs import write_logs
from flyvis_study.exploration.parameters import ExploreParameters, explore_parameters
from flyvis_study.exploration.proposers import Exhausted, Proposal, Proposer, SamplerProposer, make_proposer
from flyvis_study.exploration.space import Levels, SearchSpace, build_space
from flyvis_study.locks import pid_alive
from flyvis_study.resources import project_path
from flyvis_study.study.execute import folder_lock
from flyvis_study.study.record import NETCDF_ENGINE
from flyvis_study.study.runner import close_client, lost_run, make_client
from flyvis_study.study.spec import EXPLORATION, RunSpec, suggest_seeds

DUPLICATES_PER_RUN = 10  # a sampler stuck on saturated nodes stops after this many duplicates per budgeted run
CONSTRAINT = "connectivity"  # Optuna's constraint: reference conn_R2 - tolerance - conn_R2 (feasible: <= 0)
REPORTED = ("connectivity_R2", "tau_R2", "V_rest_R2", "cluster_accuracy", "test_R2", "test_pearson",
            "training_time_min", "V_rest_R2_corrected")


class StorageError(ValueError):
    """The Optuna storage cannot be opened; one line naming the URL."""


@dataclass
class Exploration:
    """An exploration's parameters, space, Optuna study and history (``open_exploration``)."""

    parameters: ExploreParameters
    space: SearchSpace
    study: optuna.Study
    history: History
    out_dir: Path


def open_study(params: ExploreParameters, sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    """The exploration's Optuna study (created if missing); ``StorageError`` if unreachable."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        if not params.storage:  # the default database lives in --out, which may be new; a given URL is used as is
            project_path(params.out_dir).mkdir(parents=True, exist_ok=True)
        storage = optuna.storages.RDBStorage(params.storage_url)
        return optuna.create_study(storage=storage, study_name=params.name, sampler=sampler,
                                   direction="maximize", load_if_exists=True)
    except Exception as err:  # noqa: BLE001 - sqlalchemy's errors are many; all mean one thing here
        raise StorageError(f"storage {params.storage_url}: cannot be opened ({type(err).__name__}: "
                           f"{str(err).splitlines()[0][:200]})") from None


def open_exploration(parameters: ExploreParameters | dict) -> Exploration:
    """An exploration as stored (nothing runs): parameters, space, study and history."""
    params = parameters if isinstance(parameters, ExploreParameters) else explore_parameters(**parameters)
    space = build_space(params.space, params.base_config, params.preset, params.overrides)
    study = open_study(params)
    return Exploration(params, space, study, History.from_study(study, space, params.tolerance),
                       project_path(params.out_dir))


def run_exploration(parameters: ExploreParameters | dict, progress: bool = True) -> Exploration:
    """Run (or resume) an exploration until its budget of runs; returns it (module docstring)."""
    params = parameters if isinstance(parameters, ExploreParameters) else explore_parameters(**parameters)
    space = build_space(params.space, params.base_config, params.preset, params.overrides)
    out_dir = project_path(params.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    proposer = make_proposer(params.proposer, params.max_replicates, params.sampler_seed, params.ucb_c)
    with folder_lock(out_dir, f"flyvis-study explore {params.name}"):
        study = open_study(params, proposer.sampler)
        client = make_client(workers=params.workers, scheduler=params.scheduler or None)
        try:
            _Loop(params, space, proposer, study, out_dir, client, progress).run()
        finally:
            if client is not None:
                close_client(client, close_cluster=not params.scheduler)
    return open_exploration(params)


@dataclass
class _Pending:
    """A trial in flight: its run, its Optuna trial, and its Dask future (None: serial)."""

    spec: RunSpec
    trial: optuna.trial.Trial
    future: object = None


class _Loop:
    """One exploration's loop (module docstring); serial when ``client`` is None."""

    def __init__(self, params, space, proposer: Proposer, study, out_dir: Path, client, progress: bool):
        self.p, self.space, self.proposer, self.study = params, space, proposer, study
        self.out_dir, self.client, self.progress = out_dir, client, progress
        self.distributions = {q.name: CategoricalDistribution(list(q.values)) for q in space.parameters}
        self.pending: dict[int, _Pending] = {}  # by trial number
        self.references: dict[str, object] = {}  # reference run id -> Dask future

    def history(self) -> History:
        return History.from_study(self.study, self.space, self.p.tolerance)

    def run(self) -> None:
        self._resume()
        slots = max(1, self.p.workers) if self.client is not None else 1
        duplicates = 0
        while True:
            history = self.history()
            while len(history.runs) < self.p.budget and len(self.pending) < slots:
                try:
                    proposal = self.proposer.propose(history)
                except Exhausted:
                    break
                if proposal is None:
                    break
                number = self._ask(proposal, history)
                history = self.history()
                if number is None:
                    duplicates += 1
                    if duplicates > DUPLICATES_PER_RUN * self.p.budget:
                        warnings.warn(f"exploration {self.p.name}: the {self.p.proposer} sampler proposes only "
                                      "nodes already run max_replicates times; stopping", stacklevel=2)
                        break
            if not self.pending:
                break
            self._finish(self._next_done())

    # ------------------------------------------------------------------ trials
    def _ask(self, proposal: Proposal, history: History) -> int | None:
        """Ask the study for the proposal's trial and start its runs; None: a duplicate (told at once)."""
        if proposal.levels is not None:
            self.study.enqueue_trial(self.space.as_dict(proposal.levels))
        trial = self.study.ask(self.distributions)
        levels = self.space.levels_of(trial.params)
        parent, rule = proposal.parent, proposal.rule
        if proposal.levels is None and isinstance(self.proposer, SamplerProposer):
            parent, rule = self.proposer.describe(history, levels)
        node = history.node_of(levels)
        node = history.next_node_id() if node is None else node
        replicate = history.asked(node)
        attrs = {"node": node, "parent": parent, "levels": list(levels), "rule": rule, "stage": proposal.stage,
                 "mutation": self.space.mutation(history.levels(parent) if parent is not None else None, levels)}
        if replicate >= self.p.max_replicates:  # a sampler re-proposing a saturated node: no run
            mean = history.stats()[node].mean
            for key, value in {**attrs, "duplicate": True}.items():
                trial.set_user_attr(key, value)
            trial.set_constraint(CONSTRAINT, _constraint_of(history, node))
            self.study.tell(trial, mean if math.isfinite(mean) else None,
                            state=None if math.isfinite(mean) else optuna.trial.TrialState.FAIL)
            return None
        sim_seed, train_seed = suggest_seeds(replicate, self.p.seed_mode, self.p.seed_base)
        spec = run_spec(self.p, self.space, levels, sim_seed, train_seed, replicate)
        attrs.update({"sim_seed": sim_seed, "train_seed": train_seed, "replicate": replicate, "run_id": spec.run_id,
                      "driver": f"{socket.gethostname()}:{os.getpid()}"})
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        self._start(trial.number, spec, trial)
        return trial.number

    def _reference_spec(self, spec: RunSpec) -> RunSpec:
        return run_spec(self.p, self.space, self.space.root, spec.sim_seed, spec.train_seed, spec.replicate,
                        reference=True)

    def _start(self, number: int, spec: RunSpec, trial: optuna.trial.Trial) -> None:
        self.pending[number] = _Pending(spec, trial)
        if self.client is None:
            return
        from flyvis_study.study.run import run_one  # noqa: PLC0415 - the task function, shipped to workers

        ref = self._reference_spec(spec)
        if ref.run_id not in self.references:
            self.references[ref.run_id] = self.client.submit(run_one, ref, str(self.out_dir), key=f"run-{ref.run_id}",
                                                             pure=False)
        self.pending[number].future = self.client.submit(run_one, spec, str(self.out_dir),
                                                         key=f"run-{spec.run_id}", pure=False)

    def _result(self, spec: RunSpec, future) -> str:
        """A Dask run's file: its result, or a lost run recorded (``study.runner.lost_run``)."""
        try:
            return future.result()
        except Exception as err:  # noqa: BLE001 - e.g. KilledWorker: recorded as a failed run, retried later
            return lost_run(spec, self.out_dir, err)

    def _resume(self) -> None:
        """Trials left running by a dead driver on this host are run again (they resume)."""
        host = socket.gethostname()
        for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            driver = t.user_attrs.get("driver", "")
            name, _, pid = driver.rpartition(":")
            if "run_id" not in t.user_attrs or name != host or (pid.isdigit() and pid_alive(int(pid))):
                continue
            a = t.user_attrs
            spec = run_spec(self.p, self.space, tuple(a["levels"]), a["sim_seed"], a["train_seed"], a["replicate"])
            self._start(t.number, spec, optuna.trial.Trial(self.study, t._trial_id))

    def _next_done(self) -> int:
        if self.client is None:
            return min(self.pending)
        from dask.distributed import wait  # noqa: PLC0415 - dask only when a cluster is used

        done = wait([p.future for p in self.pending.values()], return_when="FIRST_COMPLETED").done
        return min(n for n, p in self.pending.items() if p.future in done)

    def _finish(self, number: int) -> None:
        from flyvis_study.study.run import run_one  # noqa: PLC0415 - heavy (torch)

        pending = self.pending.pop(number)
        spec, trial, future = pending.spec, pending.trial, pending.future
        ref = self._reference_spec(spec)
        if future is None:
            ref_path = run_one(ref, self.out_dir, progress=self.progress)
            path = run_one(spec, self.out_dir, progress=self.progress)
        else:
            path = self._result(spec, future)
            ref_path = self._result(ref, self.references[ref.run_id])
        run, reference = read_metrics(path), read_metrics(ref_path)
        objective = run.get(self.p.objective, math.nan)
        attrs = {"metrics": {k: v for k, v in run.items() if isinstance(v, float) and math.isfinite(v)},
                 "status": run.get("status", ""), "conn": run.get("connectivity_R2", math.nan),
                 "reference_conn": reference.get("connectivity_R2", math.nan),
                 "reference_objective": reference.get(self.p.objective, math.nan), "objective": objective}
        attrs["constraint"] = attrs["reference_conn"] - self.p.tolerance - attrs["conn"]
        for key, value in attrs.items():
            trial.set_user_attr(key, _json_safe(value))
        finite = all(math.isfinite(x) for x in (objective, attrs["constraint"]))
        if finite:  # an unrecovered run has its metrics: the constraint judges it
            trial.set_constraint(CONSTRAINT, float(attrs["constraint"]))
            self.study.tell(number, float(objective))
        else:
            self.study.tell(number, state=optuna.trial.TrialState.FAIL)
        history = self.history()
        try:
            nxt = self.proposer.propose(history) if len(history.runs) < self.p.budget else "budget"
        except Exhausted:
            nxt = "exhausted"
        write_logs(self.p, history, number, nxt, self.out_dir)


def run_spec(params: ExploreParameters, space: SearchSpace, levels: Levels, sim_seed: int, train_seed: int,
             replicate: int, reference: bool = False) -> RunSpec:
    """The run of node ``levels`` on a seed pair (``reference``: the reference config's run there):
    the base config with the common overrides and the node's, content-keyed like every run."""
    overrides = dict(params.overrides) if reference else {**params.overrides, **space.overrides(levels)}
    label = params.reference if reference else ",".join(f"{k}={v}" for k, v in space.as_dict(levels).items())
    return RunSpec(block=EXPLORATION, label=label, arm=label,
                   base_config=params.reference_config if reference else params.base_config,
                   overrides=overrides, preset=params.preset, sim_seed=sim_seed, train_seed=train_seed,
                   seed_mode=params.seed_mode, replicate=replicate, device=params.device,
                   cache=str(project_path(params.cache_dir)) if params.cache_dir else None,
                   threads=params.threads_per_run)


def read_metrics(path: str | Path) -> dict:
    """A run file's headline metrics (floats) and status."""
    with xr.open_dataset(path, engine=NETCDF_ENGINE) as ds:
        out = {k: float(np.asarray(ds[k].values).ravel()[0]) for k in REPORTED if k in ds}
        out["status"] = str(np.asarray(ds["status"].values).ravel()[0]) if "status" in ds else ""
        out["run_id"] = str(np.asarray(ds["run_id"].values).ravel()[0]) if "run_id" in ds else ""
    return out


def _constraint_of(history: History, node: int) -> float:
    done = [t for t in history.finished if t.node == node]
    return float(np.mean([history.constraint(t) for t in done])) if done else 1.0


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value
