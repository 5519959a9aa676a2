"""Live progress of an exploration, read while another process (papermill's kernel) runs it.

An exploration's runs are not known in advance: each is asked of the proposer when a slot is
free. ``ExplorationMonitor`` is ``study.progress.BlockMonitor`` with its run list read from the
exploration's Optuna study at every poll (each trial's ``run_id`` user attribute, set when the
trial is asked) and its total set to the budget in runs. Its line: runs done / budget, each
running run's epoch, phase and last in-loop R2, and an ETA that extrapolates the work done since
the monitor started (finished runs 1, running ones their fraction) to the budget's runs left.
``flyvis-study explore`` runs one while papermill executes the notebook.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import optuna

from flyvis_study.exploration.parameters import ExploreParameters
from flyvis_study.resources import project_path
from flyvis_study.study.progress import BlockMonitor, Snapshot, run_fractions, snapshot


class ExplorationMonitor(BlockMonitor):
    """Polls an exploration's study and output folder; ``echo``-es a progress line when it changes."""

    def __init__(self, params: ExploreParameters, echo: Callable[[str], None], interval: float = 10.0,
                 poll: float = 1.0):
        self.params, self._storage = params, None
        super().__init__(project_path(params.out_dir), self._trial_runs(), echo, interval, poll)
        self.dashboard_shown = True  # no block status file to wait for: the study is the exploration's state

    def _trial_runs(self) -> list[str]:
        """The run ids of the study's trials in trial order ([] until the study exists)."""
        if self._storage is None:
            url = self.params.storage_url
            if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
                return []  # not created yet: the kernel creates it; the monitor never does
            self._storage = optuna.storages.RDBStorage(url)
        try:
            study_id = self._storage.get_study_id_from_name(self.params.name)
        except KeyError:
            return []
        ids = [t.user_attrs.get("run_id") for t in self._storage.get_all_trials(study_id, deepcopy=False)]
        return list(dict.fromkeys(i for i in ids if i))  # a node's repeated run is one run

    def snapshot(self) -> Snapshot:
        self.run_ids = self._trial_runs()
        snap = snapshot(self.out_dir, self.run_ids)
        return Snapshot(snap.done, snap.running, self.params.budget)

    def eta(self, snap: Snapshot) -> float | None:
        """Seconds left for the budget's runs: elapsed x (runs left / work done since the start)."""
        before, now = run_fractions(self.initial), run_fractions(snap)
        work = sum(v - before.get(i, 0.0) for i, v in now.items())
        left = self.params.budget - sum(now.values())
        if work <= 0.01 or left <= 0:
            return None
        return (time.monotonic() - self.started_at) * left / work
