"""Signed V_rest errors per cell type: where the recovery of V_rest goes wrong, under each readout.

For run r and cell type k (neurons i of that type; types from the connectome at the run's
extent), the type's signed error is the mean over its neurons of V_rest_hat_i - V_rest_i,
read from the run's ``recovered.npz`` (``V_rest_hat``: plain readout; ``V_rest_hat_corrected``:
corrected readout, ``evaluation.recovery``). An error that is a type-level offset (every
neuron of a type off by the same amount) shows as a large |mean| here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from flyvis_study.evaluation.names import READOUT_SUFFIX
from flyvis_study.study.results import runs_table
from flyvis_study.world.connectome import cached_connectome

TYPE_ERROR_COLUMNS = ("config", "arm", "run_id", "readout", "cell_type", "n_neurons", "signed_error",
                      "abs_error")


def run_type_errors(run_dir: str | Path, extent: int) -> pd.DataFrame:
    """One row per (readout, cell type) of one run (empty without recovered values)."""
    path = Path(run_dir) / "recovered.npz"
    if not path.is_file():
        return pd.DataFrame(columns=TYPE_ERROR_COLUMNS)
    con = cached_connectome(extent)
    with np.load(path) as rec:
        arrays = {r: rec[f"V_rest_hat{s}"] for r, s in READOUT_SUFFIX.items() if f"V_rest_hat{s}" in rec}
        true = rec["V_rest_true"].astype(np.float64)
    counts = np.bincount(con.node_type, minlength=len(con.cell_types))
    rows = []
    for readout, hat in arrays.items():
        err = hat.astype(np.float64) - true
        per_type = lambda w: np.bincount(con.node_type, weights=w, minlength=len(counts)) / np.maximum(counts, 1)  # noqa: E731
        signed, absolute = per_type(err), per_type(np.abs(err))
        for k, name in enumerate(con.cell_types):
            if counts[k]:
                rows.append({"readout": readout, "cell_type": name, "n_neurons": int(counts[k]),
                             "signed_error": float(signed[k]), "abs_error": float(absolute[k])})
    return pd.DataFrame(rows)


def type_errors(ds: xr.Dataset, out_dir: str | Path) -> pd.DataFrame:
    """Signed V_rest error per (run, readout, cell type) of every run of a block file whose run
    folder (``out_dir/runs/<run_id>``) holds recovered values; columns ``TYPE_ERROR_COLUMNS``."""
    parts = []
    for _, r in runs_table(ds).iterrows():
        extent = json.loads(r["config_json"])["simulation"]["extent"] if r.get("config_json") else None
        if extent is None:
            continue
        part = run_type_errors(Path(out_dir) / "runs" / r["run_id"], extent)
        if not part.empty:
            parts.append(part.assign(config=r["config"], arm=r.get("arm", r["config"]), run_id=r["run_id"]))
    if not parts:
        return pd.DataFrame(columns=TYPE_ERROR_COLUMNS)
    return pd.concat(parts, ignore_index=True)[list(TYPE_ERROR_COLUMNS)]
