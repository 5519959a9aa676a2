"""Results at hand: run or open a block, open a run folder, and look inside, without plumbing.

``run_block(N, parameters)`` runs (or resumes) block N and ``open_block(path)`` opens a block
file; both give the same ``Block``: the block file's xarray Dataset (``.ds``: metrics on
config x ground_truth x sim_seed x train_seed, trajectories over ``step``, statistics over config x metric x
statistic; each config's factors, ``arm`` and the axis levels, as coordinates along config),
the same runs with one dimension per factor (``.factorial``, e.g.
``.factorial.sel(arm="two_stage", blank_fraction=0.5)``), its run table (``.runs``, one row per
run), statistics and ranking per config, and the runs it was made of (``.run(...)``,
``.median_run(config)``) when their folders sit beside it in ``runs/``.

``open_run(path)`` -> ``Run``: one run folder (``runs/<run_id>/``, or any folder written by
``run_training``): its config, metrics, trajectory (a DataFrame with the global iteration and
phase), loss, the recovered W*, tau, V_rest and embedding with the truth they are scored
against, the trained model (loaded from its last checkpoint on request), and one ``plot_*``
method per panel of the per-run figure.

``compare(block_a, block_b, metric)`` is the paired comparison (treatment ``block_b`` minus
baseline ``block_a`` on shared seed pairs; a ``study.comparison.PairedComparison``).
``Block.type_errors()`` is the signed V_rest error per run, readout and cell type
(``study.type_errors``), ``Block.plot_type_errors()`` its figure.

Example::

    import flyvis_study as fs
    standard = fs.open_block("reports/examples/small/block0.nc")
    two_stage = fs.open_block("reports/examples/small/block1.nc")
    two_stage.statistics[["connectivity_R2_mean", "V_rest_R2_mean"]]
    fs.compare(standard, two_stage, "V_rest_R2").mean_difference
    two_stage.type_errors().groupby(["readout", "cell_type"]).signed_error.mean()
    run = two_stage.median_run()
    run.trajectory.tail()
    run.plot_recovered()
"""

from __future__ import annotations

import csv
import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from flyvis_study.config import RunConfig
from flyvis_study.study.comparison import PairedComparison


# ----------------------------------------------------------------------------- blocks
@dataclass
class Block:
    """A block file and what it summarises. ``ds`` is the Dataset; the rest is derived from it:
    the parameters it was made with and their run specs (planned again from the stored
    parameters when opened from a file, the ones that ran when returned by ``run_block``)."""

    path: Path
    ds: xr.Dataset

    @property
    def folder(self) -> Path:
        """The output folder: the block file, its runs (``runs/``) and the other blocks."""
        return self.path.parent

    @functools.cached_property
    def parameters(self):
        """The block's validated parameters (``study.parameters.BlockParameters``), as stored in the file."""
        from flyvis_study.study.blocks import block_parameters

        return block_parameters(self.number, **json.loads(self.ds.attrs["parameters"]))

    @functools.cached_property
    def specs(self) -> list:
        """The run specs (``study.spec.RunSpec``) of the block's runs, planned from ``parameters``
        (with ``only_finished``, those of the plan that are in the file)."""
        from flyvis_study.study.blocks import plan_block

        present = set(self.runs["run_id"])
        return [s for s in plan_block(self.number, self.parameters) if s.run_id in present]

    @property
    def run_files(self) -> list[Path]:
        """The run files (``runs/<run_id>/run.nc`` beside the block file) in spec order."""
        return [self.folder / "runs" / spec.run_id / "run.nc" for spec in self.specs]

    @property
    def definition(self):
        """The block's definition (``study.blocks.BlockDefinition``): arms, axes, baseline, question."""
        from flyvis_study.study.blocks import block_definition

        return block_definition(self.number)

    @functools.cached_property
    def runs(self) -> pd.DataFrame:
        """One row per run: config, sim_seed, train_seed, every scalar metric, status, run_id."""
        from flyvis_study.study.results import runs_table

        return runs_table(self.ds)

    @functools.cached_property
    def factorial(self) -> xr.Dataset:
        """The runs on (arm, *axes, ground_truth, sim_seed, train_seed[, step]) (``study.results.factorial``)."""
        from flyvis_study.study.results import factorial

        return factorial(self.ds)

    @functools.cached_property
    def statistics(self) -> pd.DataFrame:
        """Per config: n, mean, std, CV, min of each headline metric; robust, fragile, score."""
        from flyvis_study.study.statistics import config_statistics

        return config_statistics(self.ds)

    @property
    def ranking(self) -> pd.DataFrame:
        from flyvis_study.study.statistics import ranking

        return ranking(self.statistics)

    @property
    def configs(self) -> list[str]:
        return [str(c) for c in self.ds["config"].values]

    @property
    def number(self) -> int:
        return int(self.ds.attrs.get("block", -1))

    @property
    def ground_truths(self) -> list[str]:
        """The simulated networks of the block's runs (``synthetic/seed0``, flyvis model ids)."""
        return [str(g) for g in self.ds["ground_truth"].values]

    def run(self, config: str | None = None, sim_seed: int = 0, train_seed: int = 0,
            ground_truth: str | None = None) -> Run:
        """The run of ``config`` (default: the first) with these seeds on ``ground_truth``
        (default: the block's first network), from ``runs/`` beside the file."""
        config = self.configs[0] if config is None else config
        ground_truth = self.ground_truths[0] if ground_truth is None else ground_truth
        rows = self.runs[(self.runs["config"] == config) & (self.runs["ground_truth"] == ground_truth)
                         & (self.runs["sim_seed"] == sim_seed) & (self.runs["train_seed"] == train_seed)]
        if rows.empty:
            where = f" on {ground_truth}" if len(self.ground_truths) > 1 else ""
            raise KeyError(f"{self.path.name}: no run of {config!r}{where} with sim_seed={sim_seed}, "
                           f"train_seed={train_seed}; runs: {self._pairs(config)}")
        return self._open(rows.iloc[0]["run_id"])

    def median_run(self, config: str | None = None, metric: str = "connectivity_R2") -> Run:
        """The run of ``config`` whose ``metric`` is closest to the config's median (ties: lowest seeds)."""
        config = self.configs[0] if config is None else config
        rows = self.runs[self.runs["config"] == config].dropna(subset=[metric])
        if rows.empty:
            raise KeyError(f"{self.path.name}: no run of {config!r} with a finite {metric}")
        distance = (rows[metric] - rows[metric].median()).abs()
        best = rows.assign(_d=distance).sort_values(["_d", "ground_truth", "sim_seed", "train_seed"]).iloc[0]
        return self._open(best["run_id"])

    def plot_metric(self, metric: str = "V_rest_R2"):
        """Per config, one point per seed pair (sim_seed, train_seed) and the mean."""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(self.configs), 3.2))
        for k, config in enumerate(self.configs):
            values = self.runs[self.runs["config"] == config][metric].to_numpy(dtype=float)
            ax.scatter(np.full(values.size, k), values, s=18, zorder=3)
            ax.hlines(np.nanmean(values), k - 0.25, k + 0.25, color="k")
        ax.set_xticks(range(len(self.configs)), self.configs, rotation=20, ha="right", fontsize=8)
        ax.set(ylabel=metric, title=f"{self.path.name}: {metric} per seed pair")
        fig.tight_layout()
        return fig

    def type_errors(self) -> pd.DataFrame:
        """Signed V_rest error per (run, readout, cell type) of the runs beside the file (``study.type_errors``)."""
        from flyvis_study.study.type_errors import type_errors

        return type_errors(self.ds, self.path.parent)

    def plot_type_errors(self):
        """The per-type signed V_rest error, both readouts, per arm (``report.levers.type_error_figure``;
        blocks with factor coordinates)."""
        from flyvis_study.report.levers import type_error_figure

        return type_error_figure(self.ds, self.path.parent)

    def plot_trajectories(self):
        """Mean and per-run R2 trajectories per config, phases shaded (the block report's figure)."""
        from flyvis_study.report.figures import trajectory_figure

        return trajectory_figure(self.ds)

    def _open(self, run_id: str) -> Run:
        folder = self.path.parent / "runs" / str(run_id)
        if not folder.is_dir():
            raise FileNotFoundError(f"run folder {folder} is absent (only the block file was kept)")
        return open_run(folder)

    def _pairs(self, config: str) -> str:
        rows = self.runs[self.runs["config"] == config]
        several = rows["ground_truth"].nunique() > 1
        return ", ".join((f"({g}, {s}, {t})" if several else f"({s}, {t})")
                         for g, s, t in zip(rows["ground_truth"], rows["sim_seed"], rows["train_seed"])) or "none"


def run_block(number: int, params=None, progress: bool = True) -> Block:
    """Run (or resume) block ``number`` with ``params`` (``BlockParameters`` or a dict of them,
    validated before any run; ``study.execute.compute_block``) and open the block file it wrote."""
    from flyvis_study.study.blocks import block_parameters
    from flyvis_study.study.execute import compute_block

    params = params if not isinstance(params, dict | None) else block_parameters(number, **(params or {}))
    path, specs = compute_block(number, params, progress)
    block = open_block(path)
    block.__dict__.update(parameters=params, specs=specs)  # the ones that ran, not planned again
    return block


def open_block(path: str | Path) -> Block:
    """A block file (``blockN.nc``) as a ``Block``; a clear error if it is not one."""
    from flyvis_study.resources import project_path

    path = project_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no block file at {path}")
    from flyvis_study.study.schema import load_block

    return Block(path, load_block(path))  # a damaged file or a run file: ResultFileError, one line


# ----------------------------------------------------------------------------- runs
@dataclass
class Run:
    """One run folder. Arrays are loaded on first access; ``model()`` builds the trained network."""

    path: Path

    @functools.cached_property
    def config(self) -> RunConfig:
        return RunConfig.model_validate_json((self.path / "config.json").read_text())

    @functools.cached_property
    def metrics(self) -> dict:
        """The run's scalar record: metrics, status, reason, failure kind, timings (metrics.json)."""
        record = json.loads((self.path / "metrics.json").read_text())
        return {k: (np.nan if v is None else v) for k, v in record.items() if not isinstance(v, (list, dict))}

    @functools.cached_property
    def trajectory(self) -> pd.DataFrame:
        """metrics.log as a DataFrame plus ``step`` (global iteration = epoch x n_iter + iteration)."""
        with open(self.path / "metrics.log") as fh:
            df = pd.DataFrame(list(csv.DictReader(fh)))
        for col in df.columns:
            if col != "phase":
                df[col] = pd.to_numeric(df[col])
        df.insert(0, "step", df["epoch"] * self.n_iterations_per_epoch + df["iteration"])
        return df

    @property
    def n_iterations_per_epoch(self) -> int:
        return int(self.metrics["n_iterations_per_epoch"])

    @property
    def joint_iterations(self) -> int:
        return int(self.metrics["joint_iterations"])

    @functools.cached_property
    def loss(self) -> np.ndarray:
        return np.load(self.path / "loss.npy")

    @functools.cached_property
    def recovered(self) -> dict[str, np.ndarray]:
        """embedding (N, d), W_corrected (E,), tau_hat (N,), V_rest_hat (N,) and, where saved, the
        truth: W_true (E,), tau_true (N,), V_rest_true (N,) (else read from the run's dataset)."""
        path = self.path / "recovered.npz"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is absent (the run failed before its evaluation, or ran without plots)")
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
        if "W_true" not in arrays:
            from flyvis_study.world.dataset import get_dataset

            gt = get_dataset(self.config.simulation).ground_truth
            arrays.update(W_true=gt.W, tau_true=gt.tau, V_rest_true=gt.V_rest)
        return arrays

    @functools.cached_property
    def connectome(self):
        from flyvis_study.world.connectome import cached_connectome

        return cached_connectome(self.config.simulation.extent)

    def model(self, device: str = "cpu"):
        """The trained FlyVisGNN from the run's last checkpoint (evaluation mode)."""
        import torch

        from flyvis_study.model.gnn import FlyVisGNN
        from flyvis_study.train.checkpoints import checkpoints

        found = checkpoints(self.path)
        if not found:
            raise FileNotFoundError(f"{self.path / 'checkpoints'}: no checkpoint to load the model from")
        con = self.connectome
        model = FlyVisGNN(con.n_neurons, torch.from_numpy(con.edge_src), torch.from_numpy(con.edge_tgt),
                          self.config.model, mlp_backward=self.config.training.mlp_backward)
        state = torch.load(found[-1], map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        return model.to(device).eval()

    # --------------------------------------------------------------------- panels
    def plot_trajectory(self, ax=None):
        """conn / V_rest / tau R2 against the global iteration, joint and V_rest phases shaded."""
        from flyvis_study.evaluation.figure import trajectory_plot

        fig, ax = _axes(ax, (6, 3.4))
        rows = self.trajectory.to_dict("records")
        trajectory_plot(ax, rows, self.n_iterations_per_epoch, self.joint_iterations, self.config.training.n_epochs)
        return fig

    def plot_loss(self, ax=None):
        from flyvis_study.evaluation.figure import loss_plot

        fig, ax = _axes(ax, (6, 3.4))
        loss_plot(ax, self.loss, self.n_iterations_per_epoch, self.joint_iterations, self.config.training.n_epochs)
        return fig

    def plot_recovered(self, axes=None):
        """Corrected W* vs true W, tau and V_rest learned vs true (red: the identity line)."""
        from flyvis_study.evaluation.figure import scatter_true_learned

        fig, axes = _axes(axes, (13, 3.8), n=3)
        r, m = self.recovered, self.metrics
        keep = np.abs(r["W_corrected"] - r["W_true"]) <= 5
        scatter_true_learned(axes[0], r["W_true"][keep], r["W_corrected"][keep], "corrected W* vs true W",
                             f"R2 {m['connectivity_R2']:.3f}", alpha=0.05, s=1)
        scatter_true_learned(axes[1], r["tau_true"], r["tau_hat"], "tau", f"R2 {m['tau_R2']:.3f}")
        scatter_true_learned(axes[2], r["V_rest_true"], r["V_rest_hat"], "V_rest", f"R2 {m['V_rest_R2']:.3f}")
        return fig

    def plot_embedding(self, ax=None):
        """The learned embedding, one colour per true cell type, type names at the medians."""
        from flyvis_study.evaluation.figure import embedding_plot

        fig, ax = _axes(ax, (5, 4.5))
        con = self.connectome
        embedding_plot(ax, self.recovered["embedding"], con.node_type, con.cell_types)
        return fig

    def plot_functions(self, axes=None):
        """g_phi(v, a)^2 per type against ReLU, and f_theta(v, a, 0, 0) per type against the true leak."""
        from types import SimpleNamespace

        from flyvis_study.evaluation.figure import function_curves

        fig, axes = _axes(axes, (11, 3.8), n=2)
        r = self.recovered
        truth = SimpleNamespace(V_rest=r["V_rest_true"], tau=r["tau_true"])
        con = self.connectome
        function_curves(axes, self.model(), None, con.node_type, truth, con.cell_types)
        return fig


def open_run(path: str | Path) -> Run:
    """A run folder as a ``Run``; a clear error if it has no config.json / metrics.json."""
    from flyvis_study.resources import project_path

    path = project_path(path)
    missing = [n for n in ("config.json", "metrics.json", "metrics.log") if not (path / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{path} is not a finished run folder (no {', '.join(missing)})")
    return Run(path)


def compare(block_a: str | Path | Block | xr.Dataset, block_b: str | Path | Block | xr.Dataset, metric: str,
            config_a: str | None = None, config_b: str | None = None) -> PairedComparison:
    """Paired comparison of ``metric``, block_b (treatment) minus block_a (baseline), on shared seed pairs.

    Returns a ``study.comparison.PairedComparison``: the per-pair values and differences, the
    mean difference with its 95 % t and bootstrap intervals, the exact sign-flip, Wilcoxon and
    paired-t p values and d_z.
    """
    from flyvis_study.study.comparison import paired_comparison

    def dataset(b):
        return b.ds if isinstance(b, Block) else b if isinstance(b, xr.Dataset) else open_block(b).ds

    return paired_comparison(dataset(block_a), dataset(block_b), metric, config_a, config_b)


def _axes(given, size, n: int = 1):
    import matplotlib.pyplot as plt

    if given is not None:
        return (given[0] if n > 1 else given).figure, given
    fig, axes = plt.subplots(1, n, figsize=size)
    if n > 1:
        axes = list(np.ravel(axes))
    fig.set_layout_engine("tight")
    return fig, axes
