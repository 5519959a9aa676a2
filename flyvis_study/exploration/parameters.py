"""An exploration's parameters: one validated model for the CLI, the notebook and the Python API.

| name | allowed | meaning |
|---|---|---|
| name | letters, digits, ``_.=-`` | the exploration (its Optuna study and its two log files) |
| preset | tiny, small, full | sizes and iteration budgets |
| base_config | a shipped or local config file | the config every node overrides |
| space | {parameter: [values]} or None | seed short names or dotted keys; None: the seed's set |
| budget | integer >= 1 | runs the search trains (the reference runs are counted apart) |
| proposer | ucb, seed_rule, tpe, gp, random | ``exploration.proposers`` |
| objective | a headline metric | maximised, subject to the connectivity constraint |
| reference | a config name | the gold standard the constraint and the final comparison use |
| tolerance | number >= 0 | feasible: conn_R2 >= the reference's on the same seeds - tolerance |
| seed_mode | generalisation, robustness | replicate r of a node: seeds (r, r), or (0, r) (+ seed_base) |
| max_replicates | integer >= 1 | runs (seed pairs) a node gets at most |
| ucb_c | number >= 0 | UCB exploration constant (in units of the objective) |
| sampler_seed | integer >= 0 | the proposer's random seed (ties, TPE/GP/random) |
| storage | "" or an Optuna storage URL | "": ``sqlite:///<out_dir>/<name>.optuna.db`` |
| workers, scheduler, device, out_dir, cache_dir, overrides, threads_per_run | as for blocks | |
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator, model_validator

from flyvis_study.config import DEFAULT_PRESET, ConfigError, load_run_config
from flyvis_study.evaluation.names import HEADLINE_METRICS
from flyvis_study.resources import project_path
from flyvis_study.study.parameters import CacheFolder, Device, OutFolder, SchedulerAddress, format_validation_error

PROPOSERS = ("ucb", "seed_rule", "tpe", "gp", "random")
NAME = re.compile(r"^[A-Za-z0-9_.=-]+$")


class ExploreParameterError(ValueError):
    """An exploration parameter is invalid; one line naming it and what is allowed."""


class ExploreParameters(BaseModel):
    """Parameters of an exploration (module docstring for the table)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("exploration", description="the exploration: its Optuna study and <name>_analysis.md, "
                                                 "<name>_memory.md")
    preset: Literal["tiny", "small", "full"] = Field(DEFAULT_PRESET, description="tiny | small | full")
    base_config: str = Field("two_stage.yaml", description="the config every node overrides")
    space: dict[str, list] | None = Field(None, description=(
        "{parameter: [allowed values]}: seed short names (alternate_joint_ratio, alternate_lr_ratio, n_epochs, "
        "data_augmentation_loop) or dotted config keys; None: the seed's explorable set"))
    budget: StrictInt = Field(24, ge=1, description="runs the search trains (reference runs counted apart)")
    proposer: Literal[PROPOSERS] = Field("ucb", description="ucb | seed_rule | tpe | gp | random")
    objective: Literal[HEADLINE_METRICS] = Field("V_rest_R2", description="the metric maximised (affine R2)")
    reference: str = Field("gold_standard", description="config of the reference runs (the constraint)")
    tolerance: float = Field(0.02, ge=0, description="feasible: conn_R2 >= reference's on the same seeds - this")
    seed_mode: Literal["generalisation", "robustness"] = Field("generalisation", description=(
        "replicate r of a node runs on seeds (r, r) (generalisation) or (0, r) (robustness), + seed_base"))
    seed_base: StrictInt = Field(0, ge=0, description="first seed")
    max_replicates: StrictInt = Field(4, ge=1, description="seed pairs a node runs on at most")
    ucb_c: float = Field(0.05, ge=0, description="UCB exploration constant, in units of the objective")
    sampler_seed: StrictInt = Field(0, ge=0, description="the proposer's random seed")
    storage: str = Field("", description="Optuna storage URL; empty: sqlite:///<out_dir>/<name>.optuna.db")
    workers: StrictInt = Field(0, ge=0, description="positive: a Dask LocalCluster with this many workers")
    scheduler: SchedulerAddress = Field("", description="address of a running Dask scheduler")
    device: Device = Field("cpu", description="cpu | cuda")
    out_dir: OutFolder = Field("reports/exploration", description="runs/ and the exploration's files")
    cache_dir: CacheFolder = Field("", description="dataset cache; empty: ~/.cache/flyvis_study/datasets")
    overrides: dict[str, Any] = Field(default_factory=dict, description="dotted config overrides for every run")
    threads_per_run: StrictInt | None = Field(None, ge=1, description="torch threads of each run; None: default")

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not NAME.match(name):
            raise ValueError("letters, digits and _ . = - only (it names files)")
        return name

    @model_validator(mode="after")
    def _configs(self) -> ExploreParameters:
        for what, config in (("base_config", self.base_config), ("reference", _config_file(self.reference))):
            try:
                load_run_config(config, preset=self.preset, overrides=self.overrides)
            except (ConfigError, OSError) as err:
                raise ValueError(f"{what} {config}: {err}") from None
        if self.workers and self.scheduler:
            raise ValueError("workers and scheduler: give one of them")
        return self

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{Path(project_path(self.out_dir)) / f'{self.name}.optuna.db'}"

    @property
    def reference_config(self) -> str:
        return _config_file(self.reference)


def _config_file(name: str) -> str:
    return name if name.endswith((".yaml", ".yml")) else f"{name}.yaml"


def explore_parameters(**values) -> ExploreParameters:
    """Validated parameters (``ExploreParameterError``: one line naming each bad one)."""
    try:
        return ExploreParameters(**values)
    except ValidationError as err:
        raise ExploreParameterError(format_validation_error(err, "exploration parameters")) from None
