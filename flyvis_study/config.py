"""Validated configuration (pydantic v2, unknown keys forbidden) and YAML presets.

A run is described by ``RunConfig`` = simulation + model + training + evaluation. Configs
are assembled as: defaults <- the preset's ``defaults:`` section <- config file (e.g.
``two_stage.yaml``, found in the package's params/) <- preset
(``params/presets/{tiny,small,full}.yaml``: sizes and iteration budgets) <- explicit overrides
(dotted keys such as ``training.alternate_lr_ratio=0.05``). Every value is checked before any
compute; errors name the key and the allowed range.

Reference (flyvis-gnn) key names such as ``coeff_edge_diff`` or ``learning_rate_start`` are
rejected with the new name in the message; ``translate_reference_names`` converts a dict
written with them explicitly.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from flyvis_study.flyvis_ids import resolvable
from flyvis_study.resources import config_file, preset_file

PRESETS = ("tiny", "small", "full")
DEFAULT_PRESET = "tiny"  # the preset of every command and block unless told otherwise

REFERENCE_NAMES = {
    "coeff_edge_diff": "coeff_g_phi_diff",
    "coeff_edge_norm": "coeff_g_phi_norm",
    "coeff_edge_weight_L1": "coeff_g_phi_weight_L1",
    "coeff_edge_weight_L2": "coeff_g_phi_weight_L2",
    "coeff_edge_weight_L1_rate": "coeff_g_phi_weight_L1_rate",
    "coeff_phi_weight_L1": "coeff_f_theta_weight_L1",
    "coeff_phi_weight_L2": "coeff_f_theta_weight_L2",
    "coeff_phi_weight_L1_rate": "coeff_f_theta_weight_L1_rate",
    "lin_edge_positive": "g_phi_positive",
    "learning_rate_start": "lr",
    "learning_rate_W_start": "lr_W",
    "learning_rate_embedding_start": "lr_embedding",
}


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key and what is allowed."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _reject_reference_names(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data:
                if key in REFERENCE_NAMES:
                    raise ValueError(f"'{key}' is a reference (flyvis-gnn) name; use "
                                     f"'{REFERENCE_NAMES[key]}' (or translate_reference_names)")
        return data


class GroundTruthConfig(_Strict):
    """Which network is simulated: ``synthetic`` (calibrated flyvis-like parameters drawn from
    ``seed``), ``flyvis`` (a pretrained flyvis network by ``model`` id; ``flow/0000/000`` is
    built in, others are read from ``$FLYVIS_ROOT_DIR``, ``world.flyvis_models``) or
    ``checkpoint`` (a flyvis checkpoint file)."""

    source: Literal["synthetic", "flyvis", "checkpoint"] = "synthetic"
    seed: int = Field(0, ge=0, description="seed of the synthetic parameters (fixed by default)")
    model: str = Field("flow/0000/000", description="flyvis model id when source=flyvis")
    checkpoint: str | None = Field(None, description="flyvis chkpt file when source=checkpoint")
    target_abscissa: float = Field(0.85, gt=0, lt=1)

    @model_validator(mode="after")
    def _source_exists(self) -> GroundTruthConfig:
        if self.source == "flyvis":
            try:
                resolvable(self.model)
            except ValueError as err:
                raise ValueError(f"model: {err}") from None
        if self.source == "checkpoint":
            if not self.checkpoint:
                raise ValueError("checkpoint: required when source='checkpoint'")
            path = Path(self.checkpoint).expanduser()
            if not path.is_file():
                raise ValueError(f"checkpoint: no readable file at {path}")
            try:
                with open(path, "rb") as fh:
                    fh.read(4)
            except OSError as err:
                raise ValueError(f"checkpoint: cannot read {path}: {err}") from None
        return self

    def label(self) -> str:
        """The ground truth's name in results: ``synthetic/seed0``, the flyvis model id, or
        ``checkpoint/<file name>``."""
        if self.source == "flyvis":
            return self.model
        if self.source == "checkpoint":
            return f"checkpoint/{Path(self.checkpoint).name}"
        return f"synthetic/seed{self.seed}"


class StimulusConfig(_Strict):
    source: Literal["natural", "flashes", "moving_edges", "gratings", "video_folder"] = "natural"
    n_base_clips: int = Field(70, ge=2, le=10_000)
    stimulus_seed: int = Field(0, ge=0)
    clip_length_min: int = Field(50, ge=1)
    clip_length_max: int = Field(104, ge=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    video_folder: str | None = None
    blank_fraction: float = Field(
        0.0, ge=0, lt=1, description="fraction of each clip's frames, at its start, shown at zero luminance "
                                     "(train and test clips alike), so that neurons relax toward rest")

    @model_validator(mode="after")
    def _check(self) -> StimulusConfig:
        if self.clip_length_max < self.clip_length_min:
            raise ValueError("clip_length_max: must be >= clip_length_min")
        if self.source == "video_folder" and not (self.video_folder and Path(self.video_folder).is_dir()):
            raise ValueError(f"video_folder: a directory of frames is required for source "
                             f"'video_folder' (got {self.video_folder!r})")
        return self


class SimulationConfig(_Strict):
    extent: int = Field(8, ge=1, le=40, description="hexagonal lattice extent n >= 1")
    n_frames: int = Field(64_000, ge=10, description="training frames (Euler steps)")
    dt: float = Field(0.02, gt=0, le=1)
    noise_model_level: float = Field(0.05, ge=0)
    seed: int = Field(0, ge=0, description="simulation.seed: clip order and noise")
    ground_truth: GroundTruthConfig = GroundTruthConfig()
    stimulus: StimulusConfig = StimulusConfig()


class ModelConfig(_Strict):
    hidden_dim: int = Field(80, ge=1)
    n_layers: int = Field(3, ge=2, le=8)
    embedding_dim: int = Field(2, ge=1)
    w_init_mode: Literal["zeros", "randn", "randn_scaled"] = "randn_scaled"
    w_init_scale: float = Field(1.0, gt=0)
    g_phi_positive: bool = True


class TrainingConfig(_Strict):
    seed: int = Field(0, ge=0, description="training.seed: initialisation and batch sampling")
    n_epochs: int = Field(1, ge=1)
    batch_size: int = Field(2, ge=1)
    data_augmentation_loop: int = Field(20, ge=1)
    iterations_fraction: float = Field(0.2, gt=0, le=10,
                                       description="Niter = int(((n_frames*aug)//batch) * this)")
    recurrent_training: Literal[False] = False
    lr_W: float = Field(5e-4, gt=0)
    lr: float = Field(1.2e-3, gt=0)
    lr_update: float | None = Field(None, gt=0, description="f_theta LR (default: lr)")
    lr_embedding: float = Field(1.55e-3, gt=0)
    coeff_W_L1: float = Field(3.3e-5, ge=0)
    coeff_W_L1_rate: float = Field(0.5, ge=0)
    coeff_W_L2: float = Field(3.5e-6, ge=0)
    coeff_g_phi_weight_L1: float = Field(0.29, ge=0)
    coeff_g_phi_weight_L1_rate: float = Field(0.5, ge=0)
    coeff_g_phi_weight_L2: float = Field(0.0, ge=0)
    coeff_f_theta_weight_L1: float = Field(0.5, ge=0)
    coeff_f_theta_weight_L1_rate: float = Field(0.4, ge=0)
    coeff_f_theta_weight_L2: float = Field(0.0015, ge=0)
    coeff_g_phi_diff: float = Field(750.0, ge=0)
    coeff_g_phi_norm: float = Field(0.9, ge=0)
    alternate_training: bool = False
    alternate_joint_ratio: float = Field(0.4, gt=0, le=1)
    alternate_lr_ratio: float = Field(0.1, gt=0, le=1)
    epoch_lr_ratio: float = Field(1.0, gt=0, le=1, description="every group's LR x this from epoch 1 on "
                                                               "(the epoch-level LR drop; 1 = none)")
    regulariser_schedule: Literal["per_epoch", "constant"] = Field(
        "per_epoch", description="per_epoch: the coefficients' per-epoch schedule (train.schedule); "
                                 "constant: every epoch keeps epoch 0's coefficients")
    derivative_target: Literal["clean", "observed"] = Field(
        "clean", description="training target: clean = the simulator's derivative f(v_t) at the stored noisy "
                             "state (privileged); observed = (v_{t+1} - v_t) / dt of the stored voltages")
    coeff_g_phi_silent: float = Field(
        0.0, ge=0, description="silent-input anchor: c * ||g_phi(v_s, a)^2||_2 with one v_s per neuron drawn "
                               "uniformly in [g_phi_silent_low, g_phi_silent_high] every step (0 = off)")
    g_phi_silent_low: float = Field(-2.0, description="lower end of the silent-input anchor's voltages")
    g_phi_silent_high: float = Field(0.0, description="upper end of the silent-input anchor's voltages")
    checkpoint_every_epoch: bool = True
    cuda_graph: bool = Field(True, description="capture the training step in a CUDA graph (GPU only)")
    mlp_backward: Literal["chunked", "autograd"] = Field(
        "chunked", description="how training differentiates the MLPs (same gradients; model.mlp)")
    matmul_precision: Literal["ieee", "tf32"] = Field(
        "ieee", description="float32 matrix products of the training step on CUDA: ieee = FP32; tf32 = "
                            "TensorFloat-32 tensor cores (faster; a 10-bit mantissa per product, so it "
                            "changes the numbers: off until its effect is measured on paired runs; "
                            "no effect on CPU; train.precision)")

    @model_validator(mode="after")
    def _silent_range(self) -> TrainingConfig:
        if self.g_phi_silent_high <= self.g_phi_silent_low:
            raise ValueError("g_phi_silent_high: must be > g_phi_silent_low")
        return self


class EvaluationConfig(_Strict):
    n_points: int = Field(1000, ge=10, description="points per neuron for slope fits")
    in_loop_points: int = Field(100, ge=10, description="points per neuron for the in-loop R2 (cheap)")
    n_gain_frames: int = Field(8, ge=1)
    gmm_components: int = Field(100, ge=2)
    vrest_outlier_threshold: float = Field(0.5, gt=0, description="V_rest inliers: |V_rest_hat - V_rest| <= this")
    tau_outlier_threshold: float = Field(0.1, gt=0, description="tau inliers (identity R2): |tau_hat - tau| <= this")
    field_V_rest_threshold: float = Field(0.2, gt=0, description="the field's V_rest inliers: |error| <= this")
    field_tau_threshold: float = Field(0.1, gt=0, description="the field's tau inliers: |error| <= this")
    field_W_threshold: float = Field(1.0, gt=0, description="the field's W* inliers: |error| <= this")
    rollout_frames: int = Field(2000, ge=0)
    test_frames: int | None = Field(None, ge=1, description="cap on test frames (None = all)")


class RunConfig(_Strict):
    preset: str | None = Field(None, description="the preset applied (None: the config's own sizes)")
    simulation: SimulationConfig = SimulationConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()

    def n_iterations(self, n_frames: int | None = None) -> int:
        """Iterations per epoch: int(((n_frames * aug) // batch_size) * iterations_fraction)."""
        t = self.training
        n = self.simulation.n_frames if n_frames is None else n_frames
        return max(1, int(((n * t.data_augmentation_loop) // t.batch_size) * t.iterations_fraction))

    def joint_iterations(self, n_frames: int | None = None) -> int:
        """Iterations of the joint phase per epoch: int(Niter * alternate_joint_ratio) for
        two-stage training, all Niter for standard training."""
        n = self.n_iterations(n_frames)
        return int(n * self.training.alternate_joint_ratio) if self.training.alternate_training else n

    def to_json(self) -> str:
        """The config as JSON (the run id hashes it). Keys added after results existed are
        written only when they matter, so that every other config keeps the identity (run ids,
        dataset keys) it had before the key existed: ``ground_truth.model`` only for source
        flyvis, and each key of ``LATER_KEYS`` only away from its default."""
        exclude: dict = {}

        def leave_out(path: tuple[str, ...]) -> None:
            node = exclude
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = True

        if self.simulation.ground_truth.source != "flyvis":
            leave_out(("simulation", "ground_truth", "model"))
        for path, default in LATER_KEYS.items():
            value: Any = self
            for part in path:
                value = getattr(value, part)
            if value == default:
                leave_out(path)
        return self.model_dump_json(indent=1, exclude=exclude)


# Keys added after run and dataset files existed, with the default at which they are left out of
# the JSON that identifies a run (RunConfig.to_json) or a dataset (world.dataset.dataset_key).
LATER_KEYS: dict[tuple[str, ...], Any] = {
    ("simulation", "stimulus", "blank_fraction"): 0.0,
    ("training", "epoch_lr_ratio"): 1.0,
    ("training", "regulariser_schedule"): "per_epoch",
    ("evaluation", "tau_outlier_threshold"): 0.1,
    ("training", "derivative_target"): "clean",
    ("training", "coeff_g_phi_silent"): 0.0,
    ("training", "g_phi_silent_low"): -2.0,
    ("training", "g_phi_silent_high"): 0.0,
    ("evaluation", "field_V_rest_threshold"): 0.2,
    ("evaluation", "field_tau_threshold"): 0.1,
    ("evaluation", "field_W_threshold"): 1.0,
    ("training", "matmul_precision"): "ieee",
}


def drop_later_defaults(data: dict, prefix: tuple[str, ...] = ()) -> dict:
    """``data`` (a dumped config or one of its sections at ``prefix``) without the ``LATER_KEYS``
    that hold their default (a copy; for the dataset key)."""
    out = copy.deepcopy(data)
    for path, default in LATER_KEYS.items():
        if path[:len(prefix)] != prefix:
            continue
        rest, node = path[len(prefix):], out
        for part in rest[:-1]:
            node = node.get(part, {})
        if rest and rest[-1] in node and node[rest[-1]] == default:
            del node[rest[-1]]
    return out


# ----------------------------------------------------------------------------- assembly
def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def translate_reference_names(d: dict) -> dict:
    """Rename reference (flyvis-gnn) keys to ours, recursively (explicit opt-in)."""
    return {REFERENCE_NAMES.get(k, k): translate_reference_names(v) if isinstance(v, dict) else v
            for k, v in d.items()}


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path}: not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        raise ConfigError(f"config file {path}: not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: top level must be a mapping")
    return data


def preset_path(name: str) -> Path:
    if name not in PRESETS:
        raise ConfigError(f"preset '{name}': unknown; allowed: {', '.join(PRESETS)}")
    return preset_file(name)


def parse_value(text: str) -> Any:
    """Parse a command-line value with YAML rules (numbers, bools, null, lists)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"cannot parse value {text!r}: {err}") from None


def dotted_to_nested(overrides: dict[str, Any]) -> dict:
    nested: dict = {}
    for key, value in overrides.items():
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return nested


def describe_errors(err: ValidationError, unknown: str = "unknown key", width: int = 80) -> list[str]:
    """One phrase per pydantic error: 'key: what is wrong (got value)'; a rule across several
    keys (empty location) is its message alone."""
    parts = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        msg = unknown if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, ")
        if not key:
            parts.append(msg)
        elif e["type"] == "missing":
            parts.append(f"{key}: {msg}")
        else:
            parts.append(f"{key}: {msg} (got {json.dumps(e.get('input'), default=str)[:width]})")
    return parts


def validate(data: dict) -> RunConfig:
    """Build a RunConfig, turning pydantic errors into one message naming each bad key."""
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(describe_errors(err))) from None


def load_run_config(config: str | Path | dict | None = None, preset: str | None = None,
                    overrides: dict[str, Any] | None = None) -> RunConfig:
    """defaults <- preset defaults <- config (file or dict) <- preset sizes <- dotted overrides, validated.

    A preset file sets sizes and budgets at the top level, which win over the config file, and
    may hold a ``defaults:`` section, taken beneath the config file (the full preset's
    ground truth: the reference flyvis network unless the config file or an override names
    another).
    """
    data: dict = {}
    preset_data = read_yaml(preset_path(preset)) if preset is not None else {}
    preset_defaults = preset_data.pop("defaults", None) or {}
    if not isinstance(preset_defaults, dict):
        raise ConfigError(f"preset '{preset}': its defaults section must be a mapping")
    data = deep_merge(data, preset_defaults)
    if config is not None:
        if not isinstance(config, dict):
            try:
                config = read_yaml(config_file(config))
            except FileNotFoundError as err:
                raise ConfigError(str(err)) from None
        data = deep_merge(data, config)
    if preset is not None:
        data = deep_merge(data, preset_data)
        data["preset"] = preset
    if overrides:
        data = deep_merge(data, dotted_to_nested(overrides))
    return validate(data)
