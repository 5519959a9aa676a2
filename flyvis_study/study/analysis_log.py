"""Seed-format analysis log entries ('## Iter N: ...') per config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from flyvis_study.config import ConfigError, GroundTruthConfig, load_run_config
from flyvis_study.evaluation.clustering import embedding_separation
from flyvis_study.evaluation.names import R2_DEFINITIONS
from flyvis_study.evaluation.trajectory import trajectory_observations
from flyvis_study.failures import Status
from flyvis_study.study.results import runs_table
from flyvis_study.study.spec import safe_name
from flyvis_study.world.connectome import cached_connectome

if TYPE_CHECKING:  # the definition is passed in by study.blocks (no import cycle)
    from flyvis_study.study.blocks import BlockDefinition

# ----------------------------------------------------------------------------- human-readable log
DEFAULT_GROUND_TRUTH = GroundTruthConfig().label()  # named in the Seeds line only when a run used another


def analysis_entries(ds: xr.Dataset, start_iter: int = 1, runs_dir: str | Path | None = None,
                     definition: BlockDefinition | None = None) -> dict[str, list[str]]:
    """Seed-format log entries ('## Iter N: ...') per config, in replicate order, with variance updates.

    Observation: computed from the run's in-loop trajectory (``trajectory_observations``) and
    its failure reason. R2 definitions: the Metrics line's R2 are affine; the identity R2 of W*,
    tau and V_rest with their outlier shares; then both readouts of V_rest and the field's
    convention (``_field``). Embedding: silhouette by cell type and the number
    of separated types (``evaluation.clustering.embedding_separation``), from
    ``runs_dir/<run_id>/recovered.npz`` when given. Mutation / Parent rule: the resolved config
    against the block's parent (the base config at the preset with the block's common overrides);
    the Parent rule names the run's arm and its named config from the block's ``definition``.
    """
    df = runs_table(ds).sort_values(["config", "ground_truth", "replicate"])
    parent = _parent(ds)
    out: dict[str, list[str]] = {}
    counter = start_iter
    for config, grp in df.groupby("config", sort=False):
        entries = []
        seen_conn, seen_vrest = [], []
        for _, r in grp.iterrows():
            cfgj = _json(r["config_json"])
            seen_conn.append(r["connectivity_R2"])
            seen_vrest.append(r["V_rest_R2"])
            status = r["status"] if r["status"] in (Status.CONVERGED, Status.PARTIAL) else Status.FAILED.value
            mutation, rule = _mutation(ds, r, cfgj, parent, definition)
            lines = run_lines(ds, r, runs_dir)
            entries.append("\n".join([
                f"## Iter {counter}: {status}",
                f"Node: id={counter}, parent=root",
                f"Mode/Strategy: block {int(ds.attrs.get('block', -1))} grid, config {config}",
                *lines[:-1],
                f"Mutation: {mutation}",
                f"Parent rule: {rule}",
                lines[-1],
                f"Variance update: {config} now has {len(seen_conn)} runs, CV(conn_R2)={cv_text(seen_conn)}, "
                f"CV(V_rest_R2)={cv_text(seen_vrest)}",
                "Next: parent=root",
            ]))
            counter += 1
        out[str(config)] = entries
    return out


def run_lines(ds: xr.Dataset, r, runs_dir: str | Path | None = None) -> list[str]:
    """The lines of a log entry that describe the run itself, in the seed's order: Seeds,
    Config, Metrics, R2 definitions, readouts, R2 trajectory, Embedding, and last the
    Observation (which the seed puts after Mutation and Parent rule). ``r``: the run's row of
    ``runs_table(ds)``."""
    cfgj = _json(r["config_json"])
    t = cfgj.get("training", {})
    mode = {"robustness": "same-data-robustness", "generalisation": "different-data-generalization",
            "custom": "user-chosen"}.get(r["seed_mode"], r["seed_mode"])
    observation = "; ".join(trajectory_observations(_trajectory_rows(ds, r)))
    if r["reason"]:
        observation += f"; reason: {r['reason']}"
    return [
        f"Seeds: sim_seed={r['sim_seed']}, train_seed={r['train_seed']}, rationale={mode}"
        + ("" if r["ground_truth"] == DEFAULT_GROUND_TRUTH else f", ground_truth={r['ground_truth']}"),
        f"Config: lr_W={t.get('lr_W')}, lr={t.get('lr')}, lr_emb={t.get('lr_embedding')}, "
        f"joint_ratio={t.get('alternate_joint_ratio') if t.get('alternate_training') else 'n/a (standard)'}, "
        f"lr_ratio={t.get('alternate_lr_ratio') if t.get('alternate_training') else 'n/a'}, "
        f"n_epochs={t.get('n_epochs')}, aug_loop={t.get('data_augmentation_loop')}, "
        f"target={t.get('derivative_target', 'clean')}, silent_anchor={t.get('coeff_g_phi_silent', 0.0)}",
        f"Metrics: connectivity_R2={fmt(r['connectivity_R2'])}, tau_R2={fmt(r['tau_R2'])}, "
        f"V_rest_R2={fmt(r['V_rest_R2'])}, cluster_accuracy={fmt(r['cluster_accuracy'])}, "
        f"test_R2={fmt(r['test_R2'])}, test_pearson={fmt(r['test_pearson'])}, "
        f"training_time_min={fmt(r['training_time_min'], 2)}",
        f"R2 definitions: {_definitions(r)}",
        f"Readouts and the field's convention: {_field(r)}",
        "R2 trajectory: " + ", ".join(
            f"{n} peak={fmt(r[f'{n}_peak'])} final={fmt(r[f'{n}_final'])} trend={r[f'{n}_trend'] or 'n/a'}"
            f" (peak in {r[f'{n}_peak_phase'] or 'n/a'} phase)" for n in ("conn", "vrest", "tau")),
        f"Embedding: {_embedding(runs_dir, r, cfgj)}",
        f"Observation: {observation}",
    ]


def _trajectory_rows(ds: xr.Dataset, r) -> list[dict]:
    """The run's logged rows (step, epoch, phase, the three R2) from the block Dataset."""
    if "step" not in ds.dims or "traj_conn" not in ds:
        return []
    run = ds.sel(config=r["config"], ground_truth=r["ground_truth"], sim_seed=r["sim_seed"],
                 train_seed=r["train_seed"])
    ok = np.isfinite(run["traj_conn"].values)
    cols = {k: run[v].values[ok] for k, v in (("connectivity_r2", "traj_conn"), ("vrest_r2", "traj_vrest"),
                                               ("tau_r2", "traj_tau"), ("epoch", "traj_epoch"),
                                               ("phase", "traj_phase"))}
    return [{"step": int(s), "epoch": int(cols["epoch"][i]), "phase": "V_rest" if cols["phase"][i] > 0.5 else "joint",
             **{k: float(cols[k][i]) for k in ("connectivity_r2", "vrest_r2", "tau_r2")}}
            for i, s in enumerate(ds["step"].values[ok])]


def _embedding(runs_dir, r, cfgj: dict) -> str:
    if runs_dir is None:
        return "not measured (no run folder given)"
    path = Path(runs_dir) / r["run_id"] / "recovered.npz"
    try:
        embedding = np.load(path)["embedding"]
    except (OSError, KeyError, ValueError) as err:
        return f"not measured ({path.name}: {type(err).__name__})"
    con = cached_connectome(int(cfgj.get("simulation", {}).get("extent", 8)))
    sep = embedding_separation(embedding, con.node_type)
    return (f"silhouette by cell type {sep['silhouette']:.3f}; {sep['n_types_separated']} of {sep['n_types']} "
            f"types separated (>= 90 % of a type's neurons nearest its own centroid)")


def _parent(ds: xr.Dataset) -> dict:
    """The block's parent config (base config at the preset, with the common overrides), as a dict."""
    params = _json(ds.attrs.get("parameters", ""))
    try:
        cfg = load_run_config(ds.attrs.get("base_config", "two_stage.yaml"), preset=ds.attrs.get("preset"),
                              overrides=params.get("overrides") or {})
    except (ConfigError, OSError):
        return {}
    return {"overrides": params.get("overrides") or {}, "config": cfg.model_dump(mode="json")}


SEED_KEYS = ("simulation.seed", "training.seed")  # named in the Seeds line, not a mutation


def _flat(tree: dict, prefix: str = "") -> dict:
    """{dotted key: value} of a nested config dict."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _mutation(ds: xr.Dataset, r, cfgj: dict, parent: dict,
              definition: BlockDefinition | None) -> tuple[str, str]:
    """(Mutation, Parent rule): every key whose resolved value differs from the block's parent
    (seeds, and a ground truth named in the Seeds line, left out; keys one side lacks, such as
    keys added after a run was made, skipped), and the rule that made the config."""
    block = int(ds.attrs.get("block", -1))
    base = ds.attrs.get("base_config", "?")
    own = {k: v for k, v in _json(r["overrides_json"]).items() if parent.get("overrides", {}).get(k) != v}
    before, after = _flat(parent.get("config", {})), _flat(cfgj)
    skipped = set(SEED_KEYS)
    if r["ground_truth"] != DEFAULT_GROUND_TRUTH:
        skipped |= {k for k in after if k.startswith("simulation.ground_truth.")}
    changes = [f"{k} {before[k]} -> {v}" for k, v in after.items()
               if k in before and k not in skipped and before[k] != v]
    mutation = "; ".join(changes) if changes else "none (the block's parent config)"
    arm = ""
    if definition is not None and definition.arm_choice and r.get("arm") in definition.arms:
        arm = f"the arm {r['arm']} ({definition.config_of(r['arm'])}) x "
    if definition is not None and definition.replication:
        rule = (f"replication of the best-ranked config (block 5); parent = {base} at the preset "
                f"`{ds.attrs.get('preset')}`")
    elif own or arm:
        rule = (f"block {block} grid over {arm}{', '.join(own)}; parent = {base} at the preset "
                f"`{ds.attrs.get('preset')}`, one axis value per config (not an adaptive search)")
    else:
        rule = f"block {block}: the parent config itself ({base}), replicated over seed pairs"
    return mutation, rule


def _definitions(r) -> str:
    """The R2 definitions line: the Metrics line's R2 are affine; the identity R2 beside them."""
    affine = f"the Metrics line's R2 are affine ({R2_DEFINITIONS['affine']})"
    names = ("connectivity", "tau", "V_rest")
    if not all(f"{n}_R2_identity" in r for n in names):
        return affine + "; identity R2 not measured (run file from before it)"
    parts = [f"{n}_R2_identity={fmt(r[f'{n}_R2_identity'])} (outliers {_percent(r.get(f'{n}_outlier_share'))})"
             for n in names]
    return affine + f"; identity ({R2_DEFINITIONS['identity']}): " + ", ".join(parts)


def _field(r) -> str:
    """V_rest_R2 under both readouts, and W, tau, V_rest as ``inliers [all] (% dropped)``."""
    if "V_rest_R2_field" not in r or not np.isfinite(r["V_rest_R2_field"]):
        return "not measured (run file from before them: `flyvis-study reevaluate`)"

    def field(p: str, suffix: str = "") -> str:
        return (f"{fmt(r.get(f'{p}_R2_field{suffix}'))} [{fmt(r.get(f'{p}_R2_field_all{suffix}'))}] "
                f"({_percent(r.get(f'{p}_field_dropped{suffix}'))})")

    return (f"V_rest_R2 (affine) plain={fmt(r['V_rest_R2'])}, corrected={fmt(r.get('V_rest_R2_corrected'))}; "
            f"inliers [all] (% dropped): W {field('connectivity')}, tau {field('tau')}, "
            f"tau corrected {field('tau', '_corrected')}, V_rest {field('V_rest')}, "
            f"V_rest corrected {field('V_rest', '_corrected')}")


def _percent(x) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:.1f} %"


def append_analysis_logs(ds: xr.Dataset, folder: str | Path,
                         definition: BlockDefinition | None = None) -> list[Path]:
    """Append each config's entries to ``{config}_analysis.md`` (skipping entries already there)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for config, entries in analysis_entries(ds, runs_dir=folder / "runs", definition=definition).items():
        path = folder / f"{safe_name(config)}_analysis.md"
        existing = path.read_text() if path.exists() else ""
        new = [e for e in entries if e.split("\n", 4)[3] not in existing]  # keyed by the Seeds line
        if new:
            with open(path, "a") as fh:
                fh.write("\n\n".join(new) + "\n\n")
        written.append(path)
    return written


def _json(text: str) -> dict:
    try:
        return json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {}


def fmt(x, digits: int = 3) -> str:
    """``x`` to ``digits`` decimals; "nan" for a missing or non-finite value."""
    return "nan" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def cv_text(values) -> str:
    """The coefficient of variation std (ddof 1) / mean in percent; "n/a" below 2 values or at mean 0."""
    x = np.asarray(values, float)
    x = x[np.isfinite(x)]
    if x.size < 2 or x.mean() == 0:
        return "n/a"
    return f"{100 * x.std(ddof=1) / x.mean():.1f}%"
