"""Which proposer finds a config within 0.02 of the grid optimum in fewer runs?

The ground truth is the grid of blocks 2 and 3 crossed (alternate_joint_ratio x alternate_lr_ratio
at the blocks' levels), every config trained on the first seed pair, with the gold standard on the
same pair (the connectivity constraint). Each proposer then explores that space with
``max_replicates=1`` and a budget of runs, once per sampler seed, in the same folder: every run
it asks for is a grid run (content-keyed), so the search trains nothing and each proposer meets
the same numbers. For each exploration: the run at which it first ran a feasible config within
``--within`` of the grid's best feasible objective, and the best feasible objective it had run
when the budget was spent.

    python tools/proposer_benchmark.py --out reports/benchmarks/proposers            # tiny, 16 configs
    python tools/proposer_benchmark.py --out DIR --set training.iterations_fraction=0.1 --budget 8

Prints a markdown table and writes ``DIR/proposer_benchmark.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import yaml

from flyvis_study.exploration.parameters import PROPOSERS, explore_parameters
from flyvis_study.exploration.search import read_metrics, run_exploration, run_spec
from flyvis_study.exploration.space import build_space
from flyvis_study.provenance import provenance
from flyvis_study.study.blocks import block_definition
from flyvis_study.study.run import run_one


def grid_space() -> dict[str, list]:
    """Blocks 2 and 3's levels, crossed."""
    return {"alternate_joint_ratio": list(block_definition(2).axes[0].default),
            "alternate_lr_ratio": list(block_definition(3).axes[0].default)}


def train_grid(out: Path, preset: str, overrides: dict, cache: str | None) -> dict:
    """Every grid config and the gold standard on seed pair (0, 0); {levels: metrics}, reference metrics."""
    params = explore_parameters(preset=preset, space=grid_space(), overrides=overrides, cache_dir=cache or "",
                                threads_per_run=1, out_dir=str(out))
    space = build_space(params.space, params.base_config, preset, overrides)

    def spec(levels, reference=False):  # the runs an exploration of this space asks for (content-keyed)
        return run_spec(params, space, space.root if reference else levels, 0, 0, 0, reference=reference)

    reference = read_metrics(run_one(spec(None, reference=True), out))
    table = {}
    for k, levels in enumerate(space.all_nodes(), start=1):
        t0 = time.perf_counter()
        table[levels] = read_metrics(run_one(spec(levels), out))
        print(f"grid {k}/{space.size} {space.as_dict(levels)}: V_rest_R2 {table[levels]['V_rest_R2']:.4f}, "
              f"conn {table[levels]['connectivity_R2']:.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return {"space": space, "table": table, "reference": reference}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--set", action="append", default=[], help="config override key=value (YAML value)")
    ap.add_argument("--cache", default=None)
    ap.add_argument("--budget", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=10, help="sampler seeds per proposer")
    ap.add_argument("--within", type=float, default=0.02)
    ap.add_argument("--tolerance", type=float, default=0.02)
    args = ap.parse_args()
    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    out = args.out.resolve()
    grid = train_grid(out, args.preset, overrides, args.cache)
    space, table, ref = grid["space"], grid["table"], grid["reference"]
    floor = ref["connectivity_R2"] - args.tolerance
    feasible = {lv: m["V_rest_R2"] for lv, m in table.items() if m["connectivity_R2"] >= floor}
    if not feasible:
        raise SystemExit(f"no grid config is feasible (connectivity_R2 >= {floor:.4f}): nothing to find")
    optimum = max(feasible.values())
    rows, runs = [], {}
    for proposer in PROPOSERS:
        seeds = [0] if proposer == "seed_rule" else list(range(args.seeds))  # the seed rule is deterministic
        for seed in seeds:
            ex = run_exploration({"name": f"{proposer}-s{seed}", "preset": args.preset, "space": grid_space(),
                                  "budget": args.budget, "proposer": proposer, "max_replicates": 1,
                                  "sampler_seed": seed, "overrides": overrides, "out_dir": str(out),
                                  "cache_dir": args.cache or "", "threads_per_run": 1,
                                  "tolerance": args.tolerance}, progress=False)
            visited = [t.levels for t in ex.history.runs]
            found = next((k for k, lv in enumerate(visited, start=1) if feasible.get(lv, -math.inf) >= optimum
                          - args.within), None)
            best = max((feasible[lv] for lv in visited if lv in feasible), default=math.nan)
            runs[f"{proposer}-s{seed}"] = {"visited": [space.as_dict(lv) for lv in visited], "found_at": found,
                                           "best_at_budget": best}
            rows.append((proposer, found, best))
    print(f"\nGrid: {space.size} configs ({', '.join(f'{p.name} {list(p.values)}' for p in space.parameters)}), "
          f"preset {args.preset}, overrides {overrides}; gold standard connectivity_R2 {ref['connectivity_R2']:.4f}; "
          f"{len(feasible)} feasible (conn >= {floor:.4f}); best feasible V_rest_R2 {optimum:.4f}; budget "
          f"{args.budget} runs; found = a feasible config within {args.within} of it.\n")
    print("| proposer | explorations | found within budget | runs to find (median [min, max]) | "
          "best feasible V_rest_R2 at budget (mean) | gap to optimum (mean) |")
    print("|---|---|---|---|---|---|")
    summary = {}
    for proposer in PROPOSERS:
        mine = [r for r in rows if r[0] == proposer]
        found = [r[1] for r in mine if r[1] is not None]
        best = [r[2] for r in mine if math.isfinite(r[2])]
        runs_to = (f"{statistics.median(found):g} [{min(found)}, {max(found)}]" if found else "n/a")
        mean_best = statistics.mean(best) if best else math.nan
        summary[proposer] = {"explorations": len(mine), "found": len(found), "runs_to_find": found,
                             "mean_best_at_budget": mean_best}
        print(f"| {proposer} | {len(mine)} | {len(found)} of {len(mine)} | {runs_to} | {mean_best:.4f} | "
              f"{optimum - mean_best:.4f} |")
    record = {"grid": {str(space.as_dict(lv)): m for lv, m in table.items()}, "reference": ref,
              "optimum": optimum, "feasible": len(feasible), "budget": args.budget, "within": args.within,
              "tolerance": args.tolerance, "preset": args.preset, "overrides": overrides, "summary": summary,
              "explorations": runs, "provenance": provenance("cpu")}
    (out / "proposer_benchmark.json").write_text(json.dumps(record, indent=1, default=str))


if __name__ == "__main__":
    main()
