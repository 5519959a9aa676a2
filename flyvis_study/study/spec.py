"""Study runs: run specs over seed x cell grids, one run file per run, resumable.

A ``Cell`` is one cell of a block's factorial (label, arm, factor levels, config); a
``RunSpec`` is a cell on one seed pair: a base config file, dotted overrides, a preset and
both seeds. Its ``run_id`` is keyed by content (``run_id_of``: the seeds and a digest of the
resolved config, which holds the seeds and the ground truth), never by a label: any block
that needs the same run (same resolved config, same seeds) finds it finished in its output
folder, whatever block made it. ``run_one`` trains and evaluates one
run into ``out_root/runs/<run_id>/`` and writes ``run.nc`` (netCDF-4) last and
atomically; it never raises for a failed run: the failure (exception or divergence) is
recorded in the run file with its reason.

Seeds (both testing modes; deterministic in (replicate, seed_base), and shared by all
blocks by default so blocks can be compared on the same seed pairs):
- ``generalisation``: simulation.seed = seed_base + replicate, training.seed = seed_base + replicate;
- ``robustness``: simulation.seed = seed_base (fixed), training.seed = seed_base + replicate.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from flyvis_study.config import DEFAULT_PRESET, RunConfig, load_run_config

SEED_MODES = ("generalisation", "robustness")
EXPLORATION = -1  # RunSpec.block of a run an exploration planned (not a block)


@dataclass(frozen=True)
class Cell:
    """One cell of a block's factorial: an arm at one level of each axis.

    ``label`` names the cell in its block (the ``config`` coordinate); ``arm`` and ``factors``
    ({axis name: level}) are its coordinates in run and block files; ``base_config`` and
    ``overrides`` (dotted keys) resolve it to a run config. ``replicates``: how many of the
    block's seed pairs the cell runs on (the first ones; None: all).
    """

    label: str
    arm: str
    base_config: str
    overrides: dict = field(default_factory=dict)
    factors: dict = field(default_factory=dict)
    replicates: int | None = None


class RunSpec(BaseModel):
    """One run of a study block."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    block: int = Field(ge=EXPLORATION, description="the block that planned the run; EXPLORATION (-1): an "
                                                   "exploration (flyvis_study.exploration)")
    label: str = Field(min_length=1, description="config name within the block, e.g. 'lr_ratio=0.05'")
    base_config: str = "two_stage.yaml"
    overrides: dict[str, Any] = Field(default_factory=dict)
    preset: str = DEFAULT_PRESET
    sim_seed: int = Field(ge=0)
    train_seed: int = Field(ge=0)
    seed_mode: Literal["generalisation", "robustness", "custom"] = "generalisation"
    replicate: int = Field(0, ge=0)
    device: str = "cpu"
    cache: str | None = None
    threads: int | None = Field(None, ge=1, description="torch intra-op threads of the run (execution only, not "
                                                        "part of its identity); None: the process's own")
    ground_truth_model: str | None = Field(None, description="a flyvis model id (the block's ground_truth_models "
                                                             "axis); None: the config's own ground truth")
    arm: str = Field("", description="the cell's arm (a coordinate); '' = the label")
    factors: dict[str, float | int] = Field(default_factory=dict, description="{axis name: level} of the cell")

    @functools.cached_property
    def config(self) -> RunConfig:
        """The validated RunConfig of this run (seeds and ground-truth model applied), resolved once."""
        overrides = dict(self.overrides)
        overrides.update({"simulation.seed": self.sim_seed, "training.seed": self.train_seed})
        if self.ground_truth_model is not None:
            overrides.update({"simulation.ground_truth.source": "flyvis",
                              "simulation.ground_truth.model": self.ground_truth_model})
        return load_run_config(self.base_config, preset=self.preset, overrides=overrides)

    @property
    def ground_truth(self) -> str:
        """The ground truth's label (``GroundTruthConfig.label``): the run's ``ground_truth`` coordinate."""
        return self.config.simulation.ground_truth.label()

    @functools.cached_property
    def run_id(self) -> str:
        """The run's content key (``run_id_of``): no label, so blocks share runs."""
        return run_id_of(self.config)


def run_id_of(config: RunConfig) -> str:
    """``[<flyvis model>__]s<sim seed>_t<train seed>__<digest>``: the digest is the first 8 hex
    digits of the sha256 of the resolved config's JSON (``RunConfig.to_json``, which holds the
    seeds and the ground truth); the seeds and a flyvis ground truth are spelled out to be read."""
    digest = hashlib.sha256(config.to_json().encode()).hexdigest()[:8]
    truth = config.simulation.ground_truth
    model = f"{safe_name(truth.model)}__" if truth.source == "flyvis" else ""
    return f"{model}s{config.simulation.seed}_t{config.training.seed}__{digest}"


def safe_name(text: str) -> str:
    """``text`` as a file-name part: letters, digits and ``._=-`` kept, anything else ``_``."""
    return "".join(ch if ch.isalnum() or ch in "._=-" else "_" for ch in text)


def suggest_seeds(replicate: int, mode: str, seed_base: int = 0) -> tuple[int, int]:
    """(simulation.seed, training.seed) of a replicate in a testing mode."""
    if mode == "generalisation":
        return seed_base + replicate, seed_base + replicate
    if mode == "robustness":
        return seed_base, seed_base + replicate
    raise ValueError(f"seed_mode {mode!r}: allowed: {', '.join(SEED_MODES)}")


def grid_specs(block: int, configs: list[Cell] | dict[str, dict], replicates: int, *,
               base_config: str = "two_stage.yaml",
               preset: str = DEFAULT_PRESET, seed_mode: str = "generalisation", seed_base: int = 0,
               sim_seeds: list[int] | None = None, train_seeds: list[int] | None = None,
               common_overrides: dict | None = None, device: str = "cpu", cache: str | None = None,
               ground_truth_models: list[str] | None = None, threads: int | None = None) -> list[RunSpec]:
    """Specs for every (cell, ground-truth model, replicate). ``configs``: the cells, or a
    mapping {label: dotted overrides} of cells of one arm each on ``base_config``.

    Explicit ``sim_seeds``/``train_seeds`` (equal length) replace the suggested seeds.
    ``ground_truth_models`` (flyvis model ids) repeats every (config, seed pair) on each
    network, a third seed-like axis; empty or None: the configs' own ground truth.
    All specs are validated (config resolved) here, before any run starts.
    """
    if sim_seeds is not None or train_seeds is not None:
        if sim_seeds is None or train_seeds is None or len(sim_seeds) != len(train_seeds):
            raise ValueError("sim_seeds and train_seeds must be given together, with equal lengths")
        pairs = list(zip(sim_seeds, train_seeds))
        modes = ["custom"] * len(pairs)
    else:
        if seed_mode == "both":
            modes = [SEED_MODES[r % 2] for r in range(replicates)]
        elif seed_mode in SEED_MODES:
            modes = [seed_mode] * replicates
        else:
            raise ValueError(f"seed_mode {seed_mode!r}: allowed: generalisation, robustness, both")
        pairs = [suggest_seeds(r, m, seed_base) for r, m in enumerate(modes)]
    if isinstance(configs, dict):
        configs = [Cell(label, label, base_config, overrides) for label, overrides in configs.items()]
    specs = []
    for cell in configs:
        merged = {**(common_overrides or {}), **cell.overrides}
        for model in (ground_truth_models or [None]):
            for r, ((s, t), mode) in enumerate(zip(pairs[:cell.replicates], modes)):
                spec = RunSpec(block=block, label=cell.label, base_config=cell.base_config, overrides=merged,
                               preset=preset, sim_seed=int(s), train_seed=int(t), seed_mode=mode, replicate=r,
                               device=device, cache=cache, threads=threads, ground_truth_model=model, arm=cell.arm,
                               factors=cell.factors)
                _ = spec.config  # validate before any compute
                specs.append(spec)
    return specs
