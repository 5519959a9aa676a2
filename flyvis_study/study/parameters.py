"""The block parameters: one validated model for the CLI, the notebooks and the Python API.

``block_parameters(N, **values)`` checks every parameter of block N before any run starts:
unknown names, wrong types (``replicates=true`` is not an integer), out-of-range values, seed
lists of different lengths, a device that is not there, a malformed scheduler address, an
output folder that is a file or cannot be written, missing block files. A bad value raises
``BlockParameterError`` with one line naming the parameter and what is allowed.

Common parameters (every block):

| name | allowed | meaning |
|---|---|---|
| preset | tiny, small, full | sizes and iteration budgets only |
| replicates | integer >= 1 | runs per config |
| seed_mode | generalisation, robustness, both | how replicate r picks its seeds (``study.spec``) |
| seed_base | integer >= 0 | first suggested seed (shared by all blocks, so blocks pair up) |
| sim_seeds, train_seeds | lists of integers >= 0, equal lengths, or None | explicit seed pairs, each once |
| workers | integer >= 0 | > 0: a Dask LocalCluster with this many workers |
| scheduler | "" or a Dask address (tcp://host:port, ...) | a running Dask cluster |
| device | cpu, cuda | where runs train |
| out_dir | a writable folder | block outputs (a relative path is taken from the project folder) |
| cache_dir | "" or a writable folder | dataset cache (default ~/.cache/flyvis_study/datasets) |
| overrides | mapping of dotted config keys | applied to every run |
| compare_with | "" or a block file | the baseline of the paired comparison |
| ground_truth_models | flyvis model ids, or [] | each run repeated on each network (seed-like) |
| stack | integer >= 1, or None | runs trained together (``stacking.train``); None: ``DEFAULT_STACK`` (1) |
| threads_per_run | integer >= 1, or None | torch threads of each run (``study.run.run_threads``) |
| only_finished | true, false | true: the block from the runs already finished in out_dir, training none |

``ground_truth_models`` (e.g. ``["flow/0000/000", "flow/0000/001"]``) is a third seed-like
axis, the runs' ``ground_truth`` coordinate; [] keeps the config's own ground truth.

Plus the block's grid axes (``study.blocks.BLOCKS[N].axes``); for block 5, ``best_config``
and ``best_from``; for blocks 6 and 7, ``arms`` (names of the block's arms) crossed with its
axes, ``arm_levels`` ({arm: {axis: [values]}}: that arm's levels of that axis instead of the
block-wide ones, an incomplete factorial), ``arm_replicates`` ({arm: n}) and
``level_replicates`` ({axis: {level: n}}): such cells run on their first n seed pairs only.

Reproducibility: a run's numbers depend on its config (seeds included) and its torch thread
count. Same machine and thread count: bitwise equal, serial or on Dask (tested). Across CPUs:
equal to float rounding grown through training (float64 equivalence tests hold to sqrt(eps64)).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from flyvis_study.config import DEFAULT_PRESET, describe_errors
from flyvis_study.flyvis_ids import resolvable
from flyvis_study.resources import project_path
from flyvis_study.study.result_files import read_result_file

# runs per stack when ``stack`` is None. cpu: 1, since a stacked step costs each run as much as
# its own step on a CPU (measured: README, "Replicate stacking"); cuda: 1 until the stacked
# CUDA-graph step has been measured on a GPU (``flyvis-study bench --device cuda --replicates 12``).
DEFAULT_STACK = {"cpu": 1, "cuda": 1}
SCHEDULER_ADDRESS = re.compile(r"^(tcp|tls|ucx|ws|wss|inproc)://[^\s/]+$")


def _scheduler_address(address: str) -> str:
    if address and not SCHEDULER_ADDRESS.match(address):
        raise ValueError("a Dask scheduler address such as tcp://host:8786 (or empty for none)")
    return address


def _available_device(device: str) -> str:
    if device == "cuda":
        import torch  # noqa: PLC0415 - torch only when device=cuda is asked for

        if not torch.cuda.is_available():
            raise ValueError("cuda: no CUDA device is available on this machine (allowed here: cpu)")
    return device


def _out_folder(out_dir: str) -> str:
    check_writable_folder(project_path(out_dir))
    return out_dir


def _cache_folder(cache_dir: str) -> str:
    if cache_dir:  # the datasets are written there: a file there would be silently passed over
        check_writable_folder(project_path(cache_dir))
    return cache_dir


# the execution parameters' types, shared by blocks and explorations (each checked as it is read)
SchedulerAddress = Annotated[str, AfterValidator(_scheduler_address)]  # "" or a Dask address
Device = Annotated[Literal["cpu", "cuda"], AfterValidator(_available_device)]  # cuda: only where there is one
OutFolder = Annotated[str, AfterValidator(_out_folder)]  # a writable folder (relative: the project folder's)
CacheFolder = Annotated[str, AfterValidator(_cache_folder)]  # "" or a writable folder


class BlockParameterError(ValueError):
    """A block parameter is invalid; the message is one line naming it and what is allowed."""


class BlockParameters(BaseModel):
    """Parameters every block takes (see the module docstring for the table)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: Literal["tiny", "small", "full"] = Field(DEFAULT_PRESET, description=(
        "tiny | small | full (sizes and budgets; full: the flyvis network flow/0000/000 as ground truth)"))
    replicates: StrictInt = Field(4, ge=1, description="seed pairs: every cell of the block runs on each")
    seed_mode: Literal["generalisation", "robustness", "both"] = Field("generalisation", description=(
        "generalisation (both seeds vary) | robustness (fixed sim seed) | both"))
    seed_base: StrictInt = Field(0, ge=0, description="first suggested seed; shared by all blocks, so they pair up")
    sim_seeds: list[StrictInt] | None = Field(None, description=(
        "explicit simulation seeds (list), overrides the suggestion"))
    train_seeds: list[StrictInt] | None = Field(None, description=(
        "explicit training seeds (list, same length as sim_seeds)"))
    workers: StrictInt = Field(0, ge=0, description="positive: a Dask LocalCluster with this many workers")
    scheduler: SchedulerAddress = Field("", description=(
        "address of a running Dask scheduler (e.g. dask-jobqueue on SLURM)"))
    device: Device = Field("cpu", description="cpu | cuda")
    out_dir: OutFolder = Field("reports", description="block outputs; a relative path is taken from the project folder")
    cache_dir: CacheFolder = Field("", description="dataset cache; empty: ~/.cache/flyvis_study/datasets")
    overrides: dict[str, Any] = Field(default_factory=dict, description=(
        'dotted config overrides for every run, e.g. {"training.n_epochs": 3}'))
    compare_with: str = Field("", description=(
        "a block file for the paired comparison; empty: the baseline block's file in out_dir, if any"))
    ground_truth_models: list[str] = Field(default_factory=list, description=(
        'flyvis model ids, e.g. ["flow/0000/000", "flow/0000/001"]: each run on each network; []: the '
        "config's own"))
    stack: StrictInt | None = Field(None, ge=1, description=(
        "runs trained together per process (replicate stacking); None or 1: each run alone"))
    threads_per_run: StrictInt | None = Field(None, ge=1, description=(
        "torch intra-op threads of each run (recorded in its run file); None: every core when serial, the "
        "worker's threads on Dask. Equal counts on one machine give bitwise-equal runs"))
    only_finished: StrictBool = Field(False, description=(
        "true: build the block from the runs already finished in out_dir (e.g. brought back from GPU "
        "windows by `flyvis-study window`), training none; its report says how many runs each cell has"))

    @property
    def runs_per_stack(self) -> int:
        """``stack``, or the device's default (``DEFAULT_STACK``)."""
        return self.stack if self.stack is not None else DEFAULT_STACK[self.device]

    @field_validator("ground_truth_models", mode="before")
    @classmethod
    def _models(cls, models):
        models = [models] if isinstance(models, str) else models
        if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
            raise ValueError("a list of flyvis model ids such as ['flow/0000/000', 'flow/0000/001']")
        if len(set(models)) != len(models):
            raise ValueError("each model id once")
        for model in models:
            resolvable(model)
        return models

    @field_validator("sim_seeds", "train_seeds")
    @classmethod
    def _seeds(cls, seeds: list[int] | None) -> list[int] | None:
        if seeds is not None:
            if not seeds:
                raise ValueError("give at least one seed, or None")
            if any(s < 0 for s in seeds):
                raise ValueError("seeds must be integers >= 0")
        return seeds

    @field_validator("compare_with")
    @classmethod
    def _compare_with(cls, path: str) -> str:
        if path:
            read_result_file(project_path(path), "block")  # damaged or a run file: one line, before any run
        return path

    @model_validator(mode="after")
    def _seed_pairs(self) -> BlockParameters:
        if (self.sim_seeds is None) != (self.train_seeds is None):
            raise ValueError("sim_seeds and train_seeds: give both or neither")
        if self.sim_seeds is not None and len(self.sim_seeds) != len(self.train_seeds):
            raise ValueError(f"sim_seeds and train_seeds: equal lengths required "
                             f"(got {len(self.sim_seeds)} and {len(self.train_seeds)})")
        if self.sim_seeds is not None:
            pairs = list(zip(self.sim_seeds, self.train_seeds))
            twice = sorted({p for p in pairs if pairs.count(p) > 1})
            if twice:  # one pair is one run: given twice it would be planned twice and paired with itself
                raise ValueError(f"sim_seeds and train_seeds: the seed pair(s) {', '.join(map(str, twice))} "
                                 "given more than once; each (sim_seed, train_seed) pair is one run")
        if self.workers and self.scheduler:
            raise ValueError("workers and scheduler: give one of them (a LocalCluster or a running cluster)")
        return self


def check_writable_folder(folder: Path) -> None:
    """Raise ValueError unless ``folder`` is (or can be created as) a writable directory."""
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{existing} is not writable")


def format_validation_error(err: ValidationError, what: str) -> str:
    """One line: each bad parameter, what is wrong, and the value given."""
    return f"{what}: " + "; ".join(describe_errors(err, unknown="unknown parameter", width=60))
