"""The study's blocks (seed's partition, plus the standard-training baseline block 0).

| block | focus                     | base config        | grid                                   |
|-------|---------------------------|--------------------|----------------------------------------|
| 0     | baseline                  | gold_standard.yaml | one config ("standard")                |
| 1     | two-stage default         | two_stage.yaml     | one config ("two_stage_default")       |
| 2     | joint ratio               | two_stage.yaml     | alternate_joint_ratio in joint_ratio   |
| 3     | LR ratio                  | two_stage.yaml     | alternate_lr_ratio in lr_ratio         |
| 4     | training budget           | two_stage.yaml     | n_epochs x data_augmentation_loop      |
| 5     | best-config replication   | two_stage.yaml     | the best-ranked config of given blocks |

``run_block`` builds the specs, runs them (serial or Dask), writes ``blockN.nc`` and the
seed-format ``{config}_analysis.md`` logs into the output folder, and returns the results.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from flyvis_study.study.analysis_log import append_analysis_logs
from flyvis_study.study.results import runs_table, save_block
from flyvis_study.study.runner import make_client, run_many
from flyvis_study.study.spec import grid_specs
from flyvis_study.study.statistics import block_dataset, config_statistics, ranking

BLOCK_TITLES = {0: "Block 0: standard training baseline (gold standard)",
                1: "Block 1: variance of the two-stage default",
                2: "Block 2: joint-phase ratio",
                3: "Block 3: V_rest-phase LR ratio",
                4: "Block 4: training budget (epochs x augmentation)",
                5: "Block 5: best-config replication"}


BLOCKS = tuple(BLOCK_TITLES)


def _values(x, name: str) -> list:
    vals = list(np.atleast_1d(x).tolist())
    if not vals:
        raise ValueError(f"{name}: give at least one value")
    return vals


def best_config_from(paths: list[str | Path]) -> tuple[str, dict]:
    """(label, overrides) of the best-ranked config (>= 3 runs) across the given block files."""
    best = None
    for p in paths:
        ds = xr.load_dataset(p, engine="h5netcdf")
        ranked = ranking(config_statistics(ds))
        if len(ranked):
            label = ranked.index[0]
            score = float(ranked["score"].iloc[0])
            if best is None or score > best[0]:
                runs = runs_table(ds)
                over = json.loads(runs[runs["config"] == label]["overrides_json"].iloc[0] or "{}")
                best = (score, label, over)
    if best is None:
        raise ValueError("no ranked config (>= 3 runs) in " + ", ".join(map(str, paths)))
    return best[1], best[2]


def block_grid(block: int, joint_ratio=(0.2, 0.3, 0.4, 0.5), lr_ratio=(0.01, 0.05, 0.1, 0.2),
               n_epochs=(2, 3), augmentation_loop=(20, 25, 30), best_config: dict | None = None,
               best_from: list[str] | None = None) -> tuple[str, dict[str, dict]]:
    """(base config file, {label: dotted overrides}) of a block."""
    if block not in BLOCK_TITLES:
        raise ValueError(f"block {block}: unknown; allowed: {', '.join(map(str, BLOCKS))}")
    if block == 0:
        return "gold_standard.yaml", {"standard": {}}
    if block == 1:
        return "two_stage.yaml", {"two_stage_default": {}}
    if block == 2:
        return "two_stage.yaml", {f"joint_ratio={v:g}": {"training.alternate_joint_ratio": float(v)}
                                  for v in _values(joint_ratio, "joint_ratio")}
    if block == 3:
        return "two_stage.yaml", {f"lr_ratio={v:g}": {"training.alternate_lr_ratio": float(v)}
                                  for v in _values(lr_ratio, "lr_ratio")}
    if block == 4:
        return "two_stage.yaml", {f"epochs={e}_aug={a}": {"training.n_epochs": int(e),
                                                          "training.data_augmentation_loop": int(a)}
                                  for e in _values(n_epochs, "n_epochs")
                                  for a in _values(augmentation_loop, "augmentation_loop")}
    if best_config:
        return "two_stage.yaml", {"best": dict(best_config)}
    if best_from:
        label, over = best_config_from(best_from)
        return "two_stage.yaml", {f"best({label})": over}
    return "two_stage.yaml", {"two_stage_default": {}}


@dataclass
class BlockResult:
    block: int
    dataset: xr.Dataset
    statistics: pd.DataFrame
    ranking: pd.DataFrame
    paths: list[str]
    nc_path: Path
    specs: list


def run_block(block: int, out_dir: str | Path, preset: str = "tiny", replicates: int = 4,
              seed_mode: str = "generalisation", seed_base: int = 0, sim_seeds=None, train_seeds=None,
              workers: int = 0, scheduler: str = "", device: str = "cpu", cache_dir: str = "",
              overrides: dict | None = None, progress: bool = True, **grid) -> BlockResult:
    """Run (or resume) a block and write ``out_dir/blockN.nc`` plus the analysis logs."""
    out_dir = Path(out_dir)
    base, configs = block_grid(block, **grid)
    specs = grid_specs(block, configs, replicates, base_config=base, preset=preset, seed_mode=seed_mode,
                       seed_base=seed_base, sim_seeds=sim_seeds, train_seeds=train_seeds,
                       common_overrides=overrides or {}, device=device, cache=cache_dir or None)
    client = make_client(workers=workers, scheduler=scheduler or None)
    try:
        paths = run_many(specs, out_dir, client=client, progress=progress)
    finally:
        if client is not None:
            cluster = getattr(client, "cluster", None)
            client.close()
            if cluster is not None and not scheduler:
                cluster.close()
    ds = block_dataset(paths, block, {"title": BLOCK_TITLES[block], "preset": preset, "base_config": base,
                                      "configs": json.dumps(configs), "overrides": json.dumps(overrides or {})})
    nc_path = out_dir / f"block{block}.nc"
    save_block(ds, nc_path)
    append_analysis_logs(ds, out_dir)
    stats = config_statistics(ds)
    return BlockResult(block, ds, stats, ranking(stats), paths, nc_path, specs)
