"""The study's blocks, defined once: each a factorial of named arms, its axes, its baseline and question.

What each block tests, in prose, is the markdown of its notebook (``notebooks/blockN.ipynb``).

An arm is a named config and has its name everywhere: arm ``two_stage`` is ``params/two_stage.yaml``
(``BlockDefinition.config_of``), in every block, run file, block file, log and report.

| block | focus          | arms                               | axes (block parameter -> config key)                   |
|-------|----------------|------------------------------------|--------------------------------------------------------|
| 0     | baseline       | gold_standard                      | none                                                   |
| 1     | two-stage      | two_stage                          | none                                                   |
| 2     | joint ratio    | two_stage                          | joint_ratio -> training.alternate_joint_ratio          |
| 3     | LR ratio       | two_stage                          | lr_ratio -> training.alternate_lr_ratio                |
| 4     | budget         | two_stage                          | n_epochs -> training.n_epochs x augmentation_loop ->   |
|       |                |                                    | training.data_augmentation_loop                        |
| 5     | replication    | best: two_stage + best_config      | none (best_config, or the best-ranked of best_from)    |
| 6     | V_rest levers  | ``ARMS`` (chosen with ``arms``)    | blank_fraction -> simulation.stimulus.blank_fraction x |
|       |                |                                    | noise_level -> simulation.noise_model_level;           |
|       |                |                                    | ``arm_levels`` narrows one arm's levels                |
| 7     | V_rest limits  | ``VREST_ARMS`` (chosen with        | blank_fraction -> simulation.stimulus.blank_fraction   |
|       |                | ``arms``)                          |                                                        |
| 8     | budget ladder  | ``BUDGET_ARMS`` (chosen with       | budget -> training.iterations_fraction, a multiple of  |
|       |                | ``arms``)                          | the preset's (``Axis.relative``)                       |

A block's cells (``BlockDefinition.cells``) are its arms crossed with its axes; each cell's
arm and axis levels are coordinates of its runs in the run and block files (``study.record``).
Blocks without a control of their own are compared with the baseline block's baseline arm
(``BASELINE_BLOCK``); block 6 holds its own controls (``BlockDefinition.controls``).

``BLOCKS[N]`` is the definition; ``block_parameters(N, **values)`` the validated parameters
(``study.parameters``), ``plan_block`` the validated run specs (every config resolved before
any run; run ids keyed by content, ``study.spec.run_id_of``), ``study.execute.compute_block`` runs (or resumes)
them, reusing every finished run in the output folder whatever block made it, and writes
``blockN.nc`` and the analysis logs. The CLI, the notebooks (``notebooks/blockN.ipynb``) and
the Python API all go through these.

One writer per output folder: ``study.execute.block_lock(out_dir)`` holds ``out_dir/.flyvis-study.lock``
(``flyvis_study.locks``) while a block runs; a second block on the same folder stops at once
with ``BlockInUse``, one line naming the holder (host, PID, since when). A kernel started by
``flyvis-study block``, which takes the lock first, runs under its parent's lock.
"""

from __future__ import annotations

import copy
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, create_model, field_validator, model_validator
from pydantic.fields import FieldInfo

from flyvis_study.config import ConfigError, load_run_config
from flyvis_study.flyvis_ids import BUILTIN_MODELS, network_checkpoint
from flyvis_study.resources import project_path
from flyvis_study.study.parameters import BlockParameterError, BlockParameters, format_validation_error
from flyvis_study.study.result_files import read_result_file
from flyvis_study.study.spec import Cell, RunSpec, grid_specs


@dataclass(frozen=True)
class Axis:
    """A grid axis: block parameter ``name`` sets config key ``key``; labels read ``label=value``;
    its levels are the runs' coordinate ``coordinate`` (default: ``name``; block 4's epochs axis
    is ``epochs``, since ``n_epochs`` is a variable of every run file).

    ``relative``: a level is a multiple of the key's value in the arm's config at the block's
    preset (with the block's ``overrides``), so one design holds at every preset: block 8's
    budget level 3 sets ``training.iterations_fraction`` to 3 x the preset's."""

    name: str
    key: str
    default: tuple
    kind: type  # float or int
    label: str
    help: str
    coordinate: str = ""
    relative: bool = False

    def setting(self, level, reference) -> Any:
        """The config value a cell at ``level`` sets (``reference``: the key's unscaled value)."""
        return self.kind(level) * reference if self.relative else self.kind(level)

    @property
    def factor(self) -> str:
        """The name of the runs' coordinate holding this axis's level."""
        return self.coordinate or self.name


# Block 6's training arms (each params/<arm>.yaml). Budgets: gold_standard 1 epoch (standard
# training), every other arm 2 epochs of the same iterations per epoch.
ARMS = (
    "gold_standard",
    "standard_2_epochs",  # the budget-matched control of two-stage
    "two_stage",
    "lr_drop",  # every group's LR x 0.1 from epoch 1 on
    "two_stage_constant_schedule",  # epoch-0 coefficients throughout
)

# Block 7's training arms: what limits V_rest. Budgets: 1 epoch, except the two constant-schedule
# arms (2 epochs: the phase split against its own standard-training control).
VREST_ARMS = (
    "gold_standard",
    "two_stage_constant_schedule",
    "standard_2_epochs_constant_schedule",  # its control
    "silent_anchor",  # g_phi pinned to 0 below the transmission threshold
    "observed_target",  # the finite difference of the noisy voltages as target
    "silent_anchor_observed_target",
)

# Block 8's arms: the gold standard and block 7's best arm (the largest paired V_rest_R2 gain at
# blank 0 over the gold standard), each on a ladder of training budgets.
BUDGET_ARMS = ("gold_standard", "two_stage_constant_schedule")

# The blank-fraction axis of blocks 6 and 7.
BLANK_FRACTION = Axis("blank_fraction", "simulation.stimulus.blank_fraction", (0.0, 0.5), float, "blank",
                      "fraction of each clip's first frames at zero luminance, in [0, 1)")


@dataclass(frozen=True)
class BlockDefinition:
    """A block: named arms (arm -> named config) crossed with its axes, on shared seed pairs.

    ``question`` (one or two sentences) and ``about`` (markdown) head the block's notebook and
    report; ``examples`` are the parameters of the notebook's usage line (papermill's ``-p``,
    then the CLI's). ``baseline`` is the arm the block's others are compared with; "" means the
    block has no control of its own and is compared with the study's baseline block
    (``BASELINE_BLOCK``).
    ``controls`` are the arms every other arm is compared with inside the block (blocks 6, 7);
    ``focus`` (treatment arm, control arm) the comparison the block's first question is about.
    ``arm_choice``: the block takes an ``arms`` parameter (a subset of ``arms``) and labels
    every cell with its arm, and the parameters ``arm_levels``, ``arm_replicates`` and
    ``level_replicates`` that make its factorial incomplete; ``replication``: block 5's one arm
    is the best config of earlier blocks (``best_config`` / ``best_from``). ``defaults``: the
    block's own defaults of its parameters (e.g. block 7's design), over the common ones.
    """

    number: int
    title: str
    question: str
    arms: tuple[str, ...]
    axes: tuple[Axis, ...] = ()
    about: str = ""
    examples: tuple[str, str] = ("-p replicates 2", "-p replicates=4")
    baseline: str = ""
    controls: tuple[str, ...] = ()
    focus: tuple[str, str] | tuple[()] = ()
    arm_choice: bool = False
    replication: bool = False
    defaults: dict[str, Any] = field(default_factory=dict)
    parameters: type[BlockParameters] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "parameters", _parameters_model(self))

    @property
    def notebook(self) -> str:
        return f"block{self.number}.ipynb"

    @staticmethod
    def config_of(arm: str) -> str:
        """The named config (a file in params/) of ``arm``: the arm's own name."""
        return f"{arm}.yaml"

    @property
    def base_config(self) -> str:
        """The named config of the block's first arm (the parent of its analysis log)."""
        return self.config_of(self.arms[0])

    @property
    def self_controlled(self) -> bool:
        """True if the block is compared within itself (its own controls), not with the baseline block."""
        return bool(self.controls)

    def cells(self, params: BlockParameters) -> list[Cell]:
        """Every cell of the block's factorial under ``params``, in grid order.

        Labels: the arm alone without axes; ``name=value_...`` with axes and one arm;
        ``{arm}_name=value_...`` when the block takes an ``arms`` parameter. An arm's levels of an
        axis are ``params.arm_levels[arm][axis]`` where given (an incomplete factorial); a cell
        runs on the first ``min(replicates, arm_replicates[arm], level_replicates[axis][level])``
        (the min over its levels) seed pairs.
        """
        if self.replication:
            arm, base = self.arms[0], self.base_config
            if params.best_config:
                return [Cell("best", "best", base, dict(params.best_config))]
            if params.best_from:
                label, overrides = best_config_from(params.best_from)
                return [Cell(f"best({label})", "best", base, overrides)]
            return [Cell(arm, arm, base)]
        arms = params.arms if self.arm_choice else list(self.arms)
        out = []
        for arm in arms:
            own = getattr(params, "arm_levels", {}).get(arm, {})
            levels = [own.get(a.name, getattr(params, a.name)) for a in self.axes]
            reference = {a.key: _config_value(self.config_of(arm), params, a.key) for a in self.axes if a.relative}
            for values in itertools.product(*levels):
                parts = [f"{a.label}={v:g}" for a, v in zip(self.axes, values)]
                label = "_".join([arm] * (self.arm_choice or not parts) + parts)
                caps = [getattr(params, "arm_replicates", {}).get(arm)]
                caps += [getattr(params, "level_replicates", {}).get(a.name, {}).get(a.kind(v))
                         for a, v in zip(self.axes, values)]
                caps = [c for c in caps if c is not None]
                settings = {a.key: a.setting(v, reference.get(a.key)) for a, v in zip(self.axes, values)}
                out.append(Cell(label, arm, self.config_of(arm), settings,
                                {a.factor: a.kind(v) for a, v in zip(self.axes, values)},
                                min(caps) if caps else None))
        return out


def _config_value(config: str, params: BlockParameters, key: str) -> Any:
    """The value of dotted ``key`` in named ``config`` at the block's preset and overrides."""
    value = load_run_config(config, params.preset, dict(params.overrides))
    for part in key.split("."):
        value = getattr(value, part)
    return value


def _chosen(per_arm: dict, arms: list[str], defaults: dict) -> dict:
    """``per_arm`` without the block's own default entries for arms not chosen (a default passed
    back whole, e.g. by a notebook's parameters cell, applies to the arms chosen only)."""
    return {a: v for a, v in per_arm.items() if a in arms or defaults.get(a) != v}


def _parameters_model(block: BlockDefinition) -> type[BlockParameters]:
    """BlockParameters plus this block's grid fields (a number or a list; stored as a list)."""
    fields: dict[str, Any] = {}
    validators = {}
    for axis in block.axes:
        fields[axis.name] = (list[axis.kind], Field(list(axis.default), description=(
            f"{axis.key} values: {axis.help} (a list, or one number)")))

    def as_list(cls, value):
        if isinstance(value, bool) or (isinstance(value, list) and any(isinstance(v, bool) for v in value)):
            raise ValueError("numbers required, not true/false")
        value = value if isinstance(value, (list, tuple)) else [value]
        if not value:
            raise ValueError("give at least one value")
        return list(value)

    if block.axes:
        validators["_axis_values"] = field_validator(*(a.name for a in block.axes), mode="before")(as_list)
    if block.arm_choice:
        fields["arms"] = (list[str], Field(list(block.arms), description="training arms, names of the block's arms"))

        def known_arms(cls, arms):
            unknown = [a for a in arms if a not in block.arms]
            if unknown or not arms or len(set(arms)) != len(arms):
                raise ValueError(f"unknown or repeated arm(s) {', '.join(unknown) or arms}; allowed: "
                                 f"{', '.join(block.arms)}")
            return arms

        validators["_arms"] = field_validator("arms")(known_arms)
        fields["arm_levels"] = (dict[str, dict[str, list]], Field(
            default_factory=dict, description="per arm, levels of an axis replacing the block-wide ones for "
                                              "that arm, e.g. {lr_drop: {blank_fraction: [0]}}"))
        axes = {a.name: a for a in block.axes}

        def levels_per_axis(cls, value):
            if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
                raise ValueError("a mapping {arm: {axis: [values]}}, e.g. {lr_drop: {blank_fraction: [0]}}")
            out = {}
            for arm, levels in value.items():
                unknown = [name for name in levels if name not in axes]
                if unknown:
                    raise ValueError(f"{arm}: unknown axis {', '.join(map(str, unknown))}; allowed: {', '.join(axes)}")
                out[arm] = {}
                for name, values in levels.items():
                    values = as_list(cls, values)
                    if not all(isinstance(v, (int, float)) for v in values):
                        raise ValueError(f"{arm}.{name}: numbers required")
                    out[arm][name] = [axes[name].kind(v) for v in values]
            return out

        def levels_of_listed_arms(self):
            self.__dict__["arm_levels"] = _chosen(self.arm_levels, self.arms, block.defaults.get("arm_levels", {}))
            stray = [arm for arm in self.arm_levels if arm not in self.arms]
            if stray:
                raise ValueError(f"arm_levels: {', '.join(map(str, stray))} not among the arms "
                                 f"({', '.join(self.arms)})")
            return self

        validators["_arm_levels"] = field_validator("arm_levels", mode="before")(levels_per_axis)
        validators["_arm_levels_arms"] = model_validator(mode="after")(levels_of_listed_arms)
        fields["arm_replicates"] = (dict[str, int], Field(
            default_factory=dict, description="per arm, how many of the seed pairs it runs on (its first ones), "
                                              "e.g. {observed_target: 4}"))
        fields["level_replicates"] = (dict[str, dict[float, int]], Field(
            default_factory=dict, description="per axis level, how many of the seed pairs its cells run on, "
                                              "e.g. {blank_fraction: {0.5: 4}}"))

        def replicate_caps(self):
            self.__dict__["arm_replicates"] = _chosen(self.arm_replicates, self.arms,
                                                      block.defaults.get("arm_replicates", {}))
            stray = [arm for arm in self.arm_replicates if arm not in self.arms]
            if stray:
                raise ValueError(f"arm_replicates: {', '.join(map(str, stray))} not among the arms "
                                 f"({', '.join(self.arms)})")
            for name in self.level_replicates:
                if name not in axes:
                    raise ValueError(f"level_replicates: unknown axis {name}; allowed: {', '.join(axes)}")
            counts = [*self.arm_replicates.values(), *(n for caps in self.level_replicates.values()
                                                       for n in caps.values())]
            if any(n < 1 for n in counts):
                raise ValueError("arm_replicates, level_replicates: seed-pair counts must be >= 1")
            return self

        validators["_replicate_caps"] = model_validator(mode="after")(replicate_caps)
    if block.replication:
        fields["best_config"] = (dict[str, Any], Field(default_factory=dict, description=(
            "dotted overrides of the config to replicate; empty: the best-ranked of best_from")))
        fields["best_from"] = (list[str], Field(default_factory=list, description=(
            'block files to rank, e.g. ["reports/block2.nc", "reports/block3.nc"]')))

        def files_exist(cls, paths):
            for path in paths:  # damaged or a run file: one line, before any run
                read_result_file(project_path(path), "block")
            return paths

        validators["_best_from"] = field_validator("best_from")(files_exist)
    for name, value in block.defaults.items():  # the block's own defaults
        annotation, info = fields.get(name) or (BlockParameters.model_fields[name].annotation,
                                                BlockParameters.model_fields[name])
        fields[name] = (annotation, FieldInfo.merge_field_infos(info, default=copy.deepcopy(value),
                                                                default_factory=None))
    return create_model(f"Block{block.number}Parameters", __base__=BlockParameters, __validators__=validators,
                        **fields)


BLOCKS: dict[int, BlockDefinition] = {b.number: b for b in (
    BlockDefinition(
        0, "Block 0: standard training baseline (gold standard)",
        "How well does standard training (one joint phase, 1 epoch, gold-standard settings) recover W, tau "
        "and V_rest on the seed pairs the two-stage blocks share?",
        ("gold_standard",), baseline="gold_standard",
        about="It is the control: every two-stage config is compared with it pair by pair."),
    BlockDefinition(
        1, "Block 1: variance of the two-stage default",
        "How much do the two-stage default's metrics vary from one seed pair to the next, and does it beat "
        "standard training (block 0) on the same pairs?",
        ("two_stage",),
        about="The two-stage default: joint phase 40 % of each epoch, then W and g_phi at 0.1 x their LR; "
              "2 epochs."),
    BlockDefinition(
        2, "Block 2: joint-phase ratio",
        "How long a joint warm-up before the V_rest-focus phase?",
        ("two_stage",),
        axes=(Axis("joint_ratio", "training.alternate_joint_ratio", (0.2, 0.3, 0.4, 0.5), float,
                   "joint_ratio", "fraction of each epoch in the joint phase, in (0, 1]"),),
        about="Each config sets the fraction of every epoch spent in the joint phase "
              "(`training.alternate_joint_ratio`).",
        examples=("-p joint_ratio 0.3", "-p 'joint_ratio=[0.2, 0.4]'")),
    BlockDefinition(
        3, "Block 3: V_rest-phase LR ratio",
        "How much must W and g_phi be slowed in the V_rest-focus phase for f_theta to settle V_rest?",
        ("two_stage",),
        axes=(Axis("lr_ratio", "training.alternate_lr_ratio", (0.01, 0.05, 0.1, 0.2), float,
                   "lr_ratio", "LR multiplier of W and g_phi in the V_rest phase, in (0, 1]"),),
        about="Each config sets their LR multiplier (`training.alternate_lr_ratio`).",
        examples=("-p lr_ratio 0.05", "-p 'lr_ratio=[0.01, 0.05, 0.1, 0.2]'")),
    BlockDefinition(
        4, "Block 4: training budget (epochs x augmentation)",
        "Does more training help V_rest, and at what cost in time?",
        ("two_stage",),
        axes=(Axis("n_epochs", "training.n_epochs", (2, 3), int, "epochs", "epochs, 1 or more", "epochs"),
              Axis("augmentation_loop", "training.data_augmentation_loop", (20, 25, 30), int, "aug",
                   "data augmentation loop, 1 or more")),
        about="The grid crosses the number of epochs with the data augmentation loop (both set the iteration "
              "budget). Configs here differ in budget: compare them with that in mind.",
        examples=("-p n_epochs 2 -p augmentation_loop 25", "-p 'n_epochs=[2, 3]' -p 'augmentation_loop=[20]'")),
    BlockDefinition(
        5, "Block 5: best-config replication",
        "Does the best-ranked config of blocks 1-4 keep its rank on the shared seed pairs (>= 4 runs), or was "
        "its rank luck?",
        ("two_stage",), replication=True,
        examples=("-p best_from '[\"reports/block3.nc\"]'", "-p 'best_from=[\"reports/block3.nc\"]'")),
    BlockDefinition(
        6, "Block 6: V_rest levers (training arm x blank fraction x noise level)",
        "(1) Does two-stage training raise V_rest_R2 while keeping conn_R2 *at equal budget*, i.e. against "
        "standard training for the same 2 epochs? (2) Which lever raises V_rest_R2 most over the gold standard, "
        "and at what cost in conn_R2 and tau_R2?",
        ARMS, baseline="gold_standard", controls=("gold_standard", "standard_2_epochs"),
        focus=("two_stage", "standard_2_epochs"), arm_choice=True,
        axes=(BLANK_FRACTION,
              Axis("noise_level", "simulation.noise_model_level", (0.05,), float, "noise",
                   "process noise level of the simulation, 0 or more")),
        about="""The levers:
- **training arms** (each a named config, `study.blocks.ARMS`): `gold_standard` (standard
  training, 1 epoch), `standard_2_epochs` (the budget-matched control), `two_stage`, `lr_drop` (every
  group's LR x 0.1 from epoch 2 on, `training.epoch_lr_ratio`) and `two_stage_constant_schedule`
  (two-stage with the regulariser coefficients held at their epoch-1 values,
  `training.regulariser_schedule: constant`, which separates the phase split from the switch of
  W L1 and f_theta L1 at epoch 2);
- **data**: `blank_fraction` (`simulation.stimulus.blank_fraction`: each clip's first frames at
  zero luminance, train and test clips alike, so neurons relax toward rest) and the process noise
  level (`simulation.noise_model_level`).

Every arm runs at every blank fraction and noise level on the same seed pairs, so every
comparison is paired; `arm_levels` narrows one arm's levels (an incomplete factorial, e.g. the
extra arms at blank 0 only), and a comparison whose cells were not run is left out. Every R2 is
named with its definition (**affine** and **identity**, see *How to read* at the end). Epochs
are counted from 1 in prose (metrics.log counts from 0).""",
        examples=("-p preset small", "-p 'arms=[gold_standard, standard_2_epochs, two_stage]' "
                                     "-p 'blank_fraction=[0, 0.5]'")),
    BlockDefinition(
        7, "Block 7: what limits V_rest (message offset, training target, silent anchor, phase split)",
        "What limits V_rest recovery: the offset of the learned message (read through by the corrected "
        "readout, or removed in training by the silent-input anchor), the privileged clean training target, "
        "or the regulariser schedule and phase split of two-stage training?",
        VREST_ARMS, baseline="gold_standard", controls=("gold_standard", "standard_2_epochs_constant_schedule"),
        focus=("two_stage_constant_schedule", "standard_2_epochs_constant_schedule"), arm_choice=True,
        axes=(BLANK_FRACTION,),
        defaults={
            "replicates": 8,
            "arm_levels": {arm: {"blank_fraction": [0.0]} for arm in (
                "two_stage_constant_schedule", "standard_2_epochs_constant_schedule",
                "silent_anchor_observed_target")},
            "arm_replicates": {"observed_target": 4, "silent_anchor_observed_target": 4},
            "level_replicates": {"blank_fraction": {0.5: 4}},
        },
        about="""The arms (`study.blocks.VREST_ARMS`, each a named config):
- `gold_standard`: standard training, 1 epoch, the clean derivative as target;
- `two_stage_constant_schedule` and its control `standard_2_epochs_constant_schedule`: 2 epochs
  each with the regulariser coefficients held at their epoch-1 values; they differ only by the
  phase split, so their paired difference is the phase split's own effect;
- `silent_anchor`: the gold standard plus the silent-input anchor (`training.coeff_g_phi_silent`),
  which drives g_phi^2 to 0 for presynaptic voltages in [-2, 0], where the true synapse transmits
  nothing and the data barely constrain g_phi;
- `observed_target`: the gold standard trained on the observed derivative (v_{t+1} - v_t) / dt
  (`training.derivative_target: observed`), the target a recording gives, instead of the
  simulator's clean derivative; `silent_anchor_observed_target`: both.

Every run is read out twice (a readout is not a training arm): **plain** (f_theta at message 0,
the seed's) and **corrected** (f_theta at each neuron's learned silent message, which the gauge
msg -> msg / c + d does not move; `evaluation.recovery`). Every recovery is given as the seed's
affine R2 and in the field's convention `inliers [all] (% dropped)` (identity line; thresholds
0.2 for V_rest, 0.1 for tau, 1.0 for W).

The design: at blank 0, 8 seed pairs for the first four arms, 4 for the observed-target arms; at
blank 0.5 the gold standard, the anchor and the observed target on 4 pairs (`arm_levels`,
`arm_replicates`, `level_replicates`). A "raised" verdict needs at least 8 pairs and the paired
t interval above 0.""",
        examples=("-p preset small", "-p 'arms=[gold_standard, silent_anchor]' -p replicates=2")),
    BlockDefinition(
        8, "Block 8: V_rest against the training budget (budget ladder)",
        "Where does V_rest recovery saturate with training length, under the plain and the corrected "
        "readout: the gold standard at 1x, 3x and 10x the preset's iterations, and block 7's best arm at "
        "1x and 3x, on the same seed pairs?",
        BUDGET_ARMS, baseline="gold_standard", controls=("gold_standard",), arm_choice=True,
        axes=(Axis("budget", "training.iterations_fraction", (1.0, 3.0, 10.0), float, "budget",
                   "multiple of the preset's iterations per epoch (training.iterations_fraction x budget), > 0",
                   relative=True),),
        defaults={"replicates": 2, "arm_levels": {"two_stage_constant_schedule": {"budget": [1.0, 3.0]}}},
        about="""The arms (`study.blocks.BUDGET_ARMS`, each a named config): `gold_standard` (standard
training, 1 epoch) and `two_stage_constant_schedule` (2 epochs; block 7's largest paired V_rest_R2
gain over the gold standard at blank 0). A budget level multiplies the preset's iterations per
epoch (`training.iterations_fraction`): at the small preset, level 1 is the 20,000 iterations per
epoch of blocks 0-7 (those runs are reused, not retrained), 3 and 10 are 60,000 and 200,000. The
two-stage arm has 2 epochs, so its level 3 is 6x the gold standard's level 1 in iterations.

Every run is read out with both readouts (plain and corrected) and every R2 under its named
definition. The `budget` comparisons set each arm at a higher level against the same arm at level
1 on the same seed pairs: where they stop rising, V_rest has saturated under that readout. With
2 pairs (the default) this is a trend, not a claim.""",
        examples=("-p preset small", "-p 'budget=[1, 3]' -p replicates=2")),
)}

# The study's baseline block: every block without a control of its own (``BlockDefinition.baseline``
# empty) is compared with this block's baseline arm on shared seed pairs.
BASELINE_BLOCK = 0


def block_definition(number: int) -> BlockDefinition:
    if number not in BLOCKS:
        raise BlockParameterError(f"block {number}: unknown; allowed: {', '.join(map(str, BLOCKS))}")
    return BLOCKS[number]


def block_parameters(number: int, **values) -> BlockParameters:
    """The validated parameters of block ``number`` (BlockParameterError: one line)."""
    block = block_definition(number)
    try:
        return block.parameters(**values)
    except ValidationError as err:
        raise BlockParameterError(format_validation_error(err, f"block {number}")) from None


def plan_block(number: int, params: BlockParameters | dict) -> list[RunSpec]:
    """Every run spec of the block, each config resolved and validated (no compute)."""
    block = block_definition(number)
    params = params if isinstance(params, BlockParameters) else block_parameters(number, **params)
    try:
        return grid_specs(number, block.cells(params), params.replicates, preset=params.preset,
                          seed_mode=params.seed_mode, seed_base=params.seed_base,
                          sim_seeds=params.sim_seeds, train_seeds=params.train_seeds,
                          common_overrides=dict(params.overrides), device=params.device,
                          cache=params.cache_dir or None, ground_truth_models=params.ground_truth_models,
                          threads=params.threads_per_run)
    except (ConfigError, ValueError) as err:
        message = str(err).replace("\n ", "").replace("\n", " ")
        for axis in block.axes:  # name the block parameter the user set, beside the config key it sets
            message = message.replace(f"{axis.key}:", f"{axis.name} (config key {axis.key}):")
        raise BlockParameterError(f"block {number}: {message}") from None


def check_input_files(specs: list[RunSpec]) -> None:
    """Every file the runs will read, checked before any of them starts (no compute): the
    connectome file (its sha256, ``world.connectome_file``) and each flyvis checkpoint a ground
    truth is read from (loaded; built-in networks are checked against the package manifest when
    their configs are resolved). A bad one raises ``BlockParameterError``, one line naming it."""
    from flyvis_study.world.connectome_file import connectome_problem  # noqa: PLC0415 - blocks is the CLI's validation path: no torch at import
    from flyvis_study.world.ground_truth import load_flyvis_checkpoint  # noqa: PLC0415 - as above

    problem = connectome_problem()
    if problem:
        raise BlockParameterError(problem)
    checkpoints = set()
    for spec in specs:
        gt = spec.config.simulation.ground_truth
        if gt.source == "checkpoint":
            checkpoints.add(Path(gt.checkpoint))
        elif gt.source == "flyvis" and gt.model not in BUILTIN_MODELS:
            checkpoints.add(network_checkpoint(gt.model))
    for path in sorted(checkpoints):
        try:
            load_flyvis_checkpoint(path)
        except (OSError, ValueError) as err:
            raise BlockParameterError(f"ground truth: {err}") from None


def best_config_from(paths: list[str | Path]) -> tuple[str, dict]:
    """(label, overrides) of the best-ranked config (>= 3 runs) across the given block files."""
    from flyvis_study.study.results import runs_table  # noqa: PLC0415 - blocks is the CLI's validation path: no xarray/pandas at import
    from flyvis_study.study.statistics import config_statistics, ranking  # noqa: PLC0415 - blocks is the CLI's validation path: no xarray/pandas at import

    best = None
    for p in paths:
        ds = read_result_file(project_path(p), "block")
        ranked = ranking(config_statistics(ds))
        if len(ranked):
            label = ranked.index[0]
            score = float(ranked["score"].iloc[0])
            if best is None or score > best[0]:
                runs = runs_table(ds)
                over = json.loads(runs[runs["config"] == label]["overrides_json"].iloc[0] or "{}")
                best = (score, label, over)
    if best is None:
        raise BlockParameterError("best_from: no ranked config (>= 3 runs) in " + ", ".join(map(str, paths)))
    return best[1], best[2]
