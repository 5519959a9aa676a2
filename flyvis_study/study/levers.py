"""The analysis of a block with its own controls (blocks 6 and 7): which lever moves V_rest,
paired on shared seed pairs.

A config of such a block is one cell of its factorial: an arm at one level of each axis
(``study.blocks.BlockDefinition``), read from the block file's factor coordinates. Every
comparison is a ``study.comparison.PairedComparison`` (treatment - control on the
(ground_truth, sim_seed, train_seed) cells both have), of these kinds:

- ``vs <control>`` for each control arm of the block (``BlockDefinition.controls``): each arm
  against that control at the same level of every axis;
- ``<axis factor>`` (e.g. ``blank_fraction``): each arm at a level of that axis other than its
  first, against the same arm at the first level (the other axes equal);
- ``vs gold standard``: every cell against the block's baseline arm (``BlockDefinition.baseline``)
  at the first level of every axis, the reference a user starts from; ``lever_ranking`` ranks them.

Metrics (``LEVER_METRICS``): conn_R2, tau_R2 and V_rest_R2 under the three R2 definitions
(``evaluation.names``: ``affine``, the seed's squared Pearson r of the fit learned = a * true + b;
``identity`` about learned = true on the seed's inliers; ``field``, identity on the field's
inliers), tau and V_rest under both readouts (``plain`` and ``corrected``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from flyvis_study.evaluation.names import definition_of
from flyvis_study.study.blocks import BlockDefinition, block_definition
from flyvis_study.study.comparison import PairedComparison, paired_comparison, t_interval
from flyvis_study.study.record import SCHEMA_VERSION
from flyvis_study.study.results import runs_table

LEVER_METRICS = ("V_rest_R2", "V_rest_R2_identity", "V_rest_R2_field", "V_rest_R2_corrected",
                 "V_rest_R2_identity_corrected", "V_rest_R2_field_corrected",
                 "connectivity_R2", "connectivity_R2_identity", "connectivity_R2_field",
                 "tau_R2", "tau_R2_identity", "tau_R2_field", "tau_R2_corrected", "tau_R2_field_corrected")
GOLD_STANDARD_KIND = "vs gold standard"


def block_of(ds: xr.Dataset) -> BlockDefinition:
    """The definition of the block a block file holds (its ``block`` attribute)."""
    return block_definition(int(ds.attrs["block"]))


def factor_names(ds: xr.Dataset) -> list[str]:
    """The block's factors: ``arm`` and each axis's coordinate (``Axis.factor``)."""
    return ["arm", *(a.factor for a in block_of(ds).axes)]


def lever_factors(ds: xr.Dataset) -> pd.DataFrame:
    """Per config label with runs: its arm and axis levels (the block file's factor coordinates
    along ``config``)."""
    names = factor_names(ds)
    missing = [name for name in names if name not in ds.coords]
    if missing:
        raise ValueError(f"block file without the factor coordinate(s) {', '.join(missing)} (a schema-1 "
                         f"file; schema {SCHEMA_VERSION} is current); run `flyvis-study migrate <its folder>`")
    table = pd.DataFrame({name: ds[name].values for name in names}, index=ds["config"].values)
    table.index.name = "config"
    table[names[1:]] = table[names[1:]].astype(float)
    return table.loc[table.index.isin(set(runs_table(ds)["config"]))]


def _arm_order(df: pd.DataFrame, ds: xr.Dataset) -> pd.DataFrame:
    """Rows in the block's arm order (unknown arms last), then by axis levels."""
    if df.empty:
        return df
    order = {a: i for i, a in enumerate(block_of(ds).arms)}
    levels = factor_names(ds)[1:]
    return df.sort_values(["arm", *levels[::-1]],
                          key=lambda col: col.map(lambda a: order.get(a, len(order))) if col.name == "arm" else col)


def lever_table(ds: xr.Dataset, metrics=LEVER_METRICS) -> pd.DataFrame:
    """One row per cell (arm and axis levels): runs, and per metric the mean, SD and 95 % t
    interval of the mean over its runs."""
    names = factor_names(ds)
    df = runs_table(ds).drop(columns=names, errors="ignore").join(lever_factors(ds), on="config")
    rows = []
    for key, grp in df.groupby(names, sort=False):
        row = {**dict(zip(names, key)), "runs": len(grp)}
        for m in metrics:
            x = grp[m].to_numpy(dtype=float) if m in grp else np.zeros(0)
            x = x[np.isfinite(x)]
            lo, hi = t_interval(x)
            row.update({f"{m}_mean": float(x.mean()) if x.size else np.nan,
                        f"{m}_sd": float(x.std(ddof=1)) if x.size > 1 else np.nan,
                        f"{m}_t_low": lo, f"{m}_t_high": hi})
        rows.append(row)
    return _arm_order(pd.DataFrame(rows), ds).set_index(names)


def lever_comparisons(ds: xr.Dataset, metrics=LEVER_METRICS, n_resamples: int = 9999) -> list[PairedComparison]:
    """Every paired comparison of the kinds of the module docstring."""
    block = block_of(ds)
    factors = lever_factors(ds)
    axes = [a.factor for a in block.axes]
    present = set(runs_table(ds).columns)
    metrics = [m for m in metrics if m in present]
    cell = {tuple(r[["arm", *axes]]): config for config, r in factors.iterrows()}
    first = {a: sorted(set(factors[a]))[0] if a in factors and len(factors) else 0.0 for a in axes}
    for axis in block.axes:  # the axis's first level as the block lists it (the reference level)
        listed = [float(v) for v in axis.default if float(v) in set(factors[axis.factor])]
        if listed:
            first[axis.factor] = listed[0]
    out = []

    def compare(kind, control_cell, treatment_cell, control_name):
        a, b = cell.get(control_cell), cell.get(treatment_cell)
        if a is None or b is None or a == b:
            return
        levels = dict(zip(axes, treatment_cell[1:]))
        for m in metrics:
            c = paired_comparison(ds, ds, m, baseline_config=a, treatment_config=b, n_resamples=n_resamples)
            out.append(c.within(kind=kind, arm=treatment_cell[0], levels=levels, control=control_name,
                                definition=definition_of(m), block=block.number))

    for key in cell:
        arm, levels = key[0], key[1:]
        for control in block.controls:
            if arm != control:
                compare(f"vs {control}", (control, *levels), key, control)
        for i, axis in enumerate(axes):
            if levels[i] != first[axis]:
                reference = list(levels)
                reference[i] = first[axis]
                compare(axis, (arm, *reference), key, f"{arm} at {axis} {first[axis]:g}")
        gold = (block.baseline, *(first[a] for a in axes))
        compare(GOLD_STANDARD_KIND, gold, key,
                f"{block.baseline} at " + ", ".join(f"{a} {first[a]:g}" for a in axes))
    return out


def comparison_frame(comparisons: list[PairedComparison], kind: str | None = None) -> pd.DataFrame:
    """The comparisons (of one kind, or all) as a table, one row each (``PairedComparison.row``)."""
    return pd.DataFrame([c.row() for c in comparisons if kind is None or c.kind == kind])


def lever_ranking(comparisons: list[PairedComparison], definition: str = "affine",
                  readout: str = "plain") -> pd.DataFrame:
    """Cells ranked by their paired V_rest_R2 gain over the gold standard (``vs gold standard``),
    with the conn_R2 and tau_R2 changes beside it, under one R2 ``definition`` and one readout
    (conn_R2 has the plain one only)."""
    suffix = {"affine": "", "identity": "_identity", "field": "_field"}[definition]
    corrected = "_corrected" if readout == "corrected" else ""
    wanted = {"V_rest_R2" + suffix + corrected: "V_rest", "connectivity_R2" + suffix: "conn",
              "tau_R2" + suffix + corrected: "tau"}
    rows: dict = {}
    for c in comparisons:
        if c.kind != GOLD_STANDARD_KIND or c.metric not in wanted:
            continue
        key = (c.arm, *c.levels.values())
        row = rows.setdefault(key, {"arm": c.arm, **c.levels, "n_pairs": c.n_pairs})
        short = wanted[c.metric]
        row.update({f"{short}_difference": c.mean_difference, f"{short}_t_low": c.t_low,
                    f"{short}_t_high": c.t_high, f"{short}_sign_flip_p": c.sign_flip_p,
                    f"{short}_raised": c.raised})
    table = pd.DataFrame(list(rows.values()))
    if table.empty or "V_rest_difference" not in table:
        return table
    return table.sort_values("V_rest_difference", ascending=False).reset_index(drop=True)


def epoch_boundary_table(ds: xr.Dataset) -> pd.DataFrame:
    """What happens to conn_R2 and V_rest_R2 (in-loop, affine, plain readout) at the start of epoch 2.

    Per cell with >= 2 epochs, means over its runs of: the value at the last metrics.log row
    of epoch 1 (``end_epoch1``), the lowest value in the first tenth of epoch 2
    (``min_early_epoch2``), the value at the run's last row (``end``), and ``drop`` =
    min_early_epoch2 - end_epoch1, with the number of runs whose drop is below -0.01.
    (Epochs are counted from 1 here, as in prose; metrics.log counts from 0.)
    """
    if "step" not in ds.dims:
        return pd.DataFrame()
    factors = lever_factors(ds)
    steps = ds["step"].values
    rows = []
    for config in ds["config"].values:
        if config not in factors.index:
            continue
        sub = ds.sel(config=config).stack(run=("ground_truth", "sim_seed", "train_seed"))
        epoch = sub["traj_epoch"]
        values: dict[str, list] = {}
        n_iter = None
        for r in range(sub.sizes["run"]):
            e = epoch.isel(run=r).values
            ok = np.isfinite(e)
            if not ok.any() or e[ok].max() < 1:
                continue
            if n_iter is None:
                per_epoch = sub["n_iterations_per_epoch"].isel(run=r).item()
                n_iter = int(per_epoch) if np.isfinite(per_epoch) else None
            for name, short in (("traj_conn", "conn"), ("traj_vrest", "V_rest")):
                y = sub[name].isel(run=r).values
                first = ok & (e == 0)
                second = ok & (e == 1)
                if n_iter:
                    second &= steps < n_iter + n_iter // 10 + 1
                if not first.any() or not second.any():
                    continue
                end1 = y[np.nonzero(first)[0][-1]]
                early = np.nanmin(y[second])
                values.setdefault(short, []).append((end1, early, y[np.nonzero(ok)[0][-1]]))
        if not values:
            continue
        row = dict(factors.loc[config])
        for short, triples in values.items():
            arr = np.array(triples, dtype=float)
            drop = arr[:, 1] - arr[:, 0]
            row.update({f"{short}_end_epoch1": arr[:, 0].mean(), f"{short}_min_early_epoch2": arr[:, 1].mean(),
                        f"{short}_end": arr[:, 2].mean(), f"{short}_drop": drop.mean(),
                        f"{short}_runs_dropping": int((drop < -0.01).sum()), "runs": len(arr)})
        rows.append(row)
    return _arm_order(pd.DataFrame(rows), ds).reset_index(drop=True)
