"""Seed-format analysis log entries ('## Iter N: ...') per config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from flyvis_study.study.results import runs_table


# ----------------------------------------------------------------------------- human-readable log
def analysis_entries(ds: xr.Dataset, start_iter: int = 1) -> dict[str, list[str]]:
    """Seed-format log entries ('## Iter N: ...') per config, in replicate order, with variance updates."""
    df = runs_table(ds).sort_values(["config", "replicate"])
    out: dict[str, list[str]] = {}
    counter = start_iter
    for config, grp in df.groupby("config", sort=False):
        entries = []
        seen_conn, seen_vrest = [], []
        for _, r in grp.iterrows():
            cfgj = _json(r["config_json"])
            t = cfgj.get("training", {})
            seen_conn.append(r["connectivity_R2"])
            seen_vrest.append(r["V_rest_R2"])
            mode = {"robustness": "same-data-robustness", "generalisation": "different-data-generalization",
                    "custom": "user-chosen"}.get(r["seed_mode"], r["seed_mode"])
            status = {"converged": "converged", "partial": "partial"}.get(r["status"], "failed")
            entries.append("\n".join([
                f"## Iter {counter}: {status}",
                f"Node: id={counter}, parent=root",
                f"Mode/Strategy: block {int(ds.attrs.get('block', -1))} grid, config {config}",
                f"Seeds: sim_seed={r['sim_seed']}, train_seed={r['train_seed']}, rationale={mode}",
                f"Config: lr_W={t.get('lr_W')}, lr={t.get('lr')}, lr_emb={t.get('lr_embedding')}, "
                f"joint_ratio={t.get('alternate_joint_ratio') if t.get('alternate_training') else 'n/a (standard)'}, "
                f"lr_ratio={t.get('alternate_lr_ratio') if t.get('alternate_training') else 'n/a'}, "
                f"n_epochs={t.get('n_epochs')}, aug_loop={t.get('data_augmentation_loop')}",
                f"Metrics: connectivity_R2={_f(r['connectivity_R2'])}, tau_R2={_f(r['tau_R2'])}, "
                f"V_rest_R2={_f(r['V_rest_R2'])}, cluster_accuracy={_f(r['cluster_accuracy'])}, "
                f"test_R2={_f(r['test_R2'])}, test_pearson={_f(r['test_pearson'])}, "
                f"training_time_min={_f(r['training_time_min'], 2)}",
                "R2 trajectory: " + ", ".join(
                    f"{n} peak={_f(r[f'{n}_peak'])} final={_f(r[f'{n}_final'])} trend={r[f'{n}_trend'] or 'n/a'}"
                    f" (peak in {r[f'{n}_peak_phase'] or 'n/a'} phase)" for n in ("conn", "vrest", "tau")),
                "Embedding: see the block report's embedding panel for representative runs",
                "Mutation: none (grid run)",
                "Parent rule: grid enumeration (block design), not an adaptive search",
                f"Observation: {r['reason'] or 'run completed'}",
                f"Variance update: {config} now has {len(seen_conn)} runs, CV(conn_R2)={_cv(seen_conn)}, "
                f"CV(V_rest_R2)={_cv(seen_vrest)}",
                "Next: parent=root",
            ]))
            counter += 1
        out[str(config)] = entries
    return out


def append_analysis_logs(ds: xr.Dataset, folder: str | Path) -> list[Path]:
    """Append each config's entries to ``{config}_analysis.md`` (skipping entries already there)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for config, entries in analysis_entries(ds).items():
        safe = "".join(ch if ch.isalnum() or ch in "._=-" else "_" for ch in config)
        path = folder / f"{safe}_analysis.md"
        existing = path.read_text() if path.exists() else ""
        new = [e for e in entries if e.split("\n", 4)[3] not in existing]  # keyed by the Seeds line
        if new:
            with open(path, "a") as fh:
                fh.write("\n\n".join(new) + "\n\n")
        written.append(path)
    return written


def _json(text: str) -> dict:
    import json

    try:
        return json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {}


def _f(x, digits: int = 3) -> str:
    return "nan" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _cv(values) -> str:
    x = np.asarray(values, float)
    x = x[np.isfinite(x)]
    if x.size < 2 or x.mean() == 0:
        return "n/a"
    return f"{100 * x.std(ddof=1) / x.mean():.1f}%"
