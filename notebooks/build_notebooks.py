"""Regenerate the block notebooks (committed without outputs): ``python notebooks/build_notebooks.py``.

Each block notebook is papermill-parameterised: a cell tagged ``parameters`` with plain
commented literals, derived values in the next cell, all logic in the library.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

COMMON = '''# --- scale and seeds -------------------------------------------------------
preset = "tiny"             # tiny | small | full (sizes and iteration budgets only)
replicates = 4              # runs per config
seed_mode = "generalisation"  # generalisation (both seeds vary) | robustness (fixed sim seed) | both
seed_base = 0               # first suggested seed; shared by all blocks, so they pair up
sim_seeds = None            # explicit simulation seeds (list), overrides the suggestion
train_seeds = None          # explicit training seeds (list, same length as sim_seeds)
# --- execution ---------------------------------------------------------------
workers = 0                 # positive: a Dask LocalCluster with this many workers
scheduler = ""              # address of a running Dask scheduler (e.g. dask-jobqueue on SLURM)
device = "cpu"              # cpu | cuda
out_dir = "reports"         # block outputs: blockN.nc, runs/, {config}_analysis.md
cache_dir = ""              # dataset cache; empty: ~/.cache/flyvis_study/datasets
overrides = {}              # dotted config overrides applied to every run, e.g. {"training.n_epochs": 3}
compare_with = ""           # a block file (e.g. reports/block0.nc) for the paired comparison
'''

GRIDS = {
    0: ("block0_baseline", "Standard training, gold-standard settings, on the same seeds as block 1.", ""),
    1: ("block1_variance", "Two-stage default (joint 0.4, LR ratio 0.1, 2 epochs): run-to-run variance.", ""),
    2: ("block2_joint_ratio", "Joint-phase fraction: how much warm-up before the V_rest focus?",
        'joint_ratio = [0.2, 0.3, 0.4, 0.5]   # alternate_joint_ratio values (a single number works too)\n'),
    3: ("block3_lr_ratio", "LR multiplier of W and g_phi in the V_rest-focus phase.",
        'lr_ratio = [0.01, 0.05, 0.1, 0.2]    # alternate_lr_ratio values (a single number works too)\n'),
    4: ("block4_budget", "Training budget: epochs x data augmentation loop.",
        'n_epochs = [2, 3]\naugmentation_loop = [20, 25, 30]\n'),
    5: ("block5_replication", "Replicate the best config of blocks 1-4 (>= 4 runs).",
        'best_config = {}   # dotted overrides of the config to replicate; empty: rank best_from\n'
        'best_from = []     # block files to rank (e.g. ["reports/block2.nc", "reports/block3.nc"])\n'),
}
GRID_ARGS = {0: "", 1: "", 2: "joint_ratio=joint_ratio", 3: "lr_ratio=lr_ratio",
             4: "n_epochs=n_epochs, augmentation_loop=augmentation_loop",
             5: "best_config=best_config, best_from=list(best_from)"}


def _notebook(cells: list) -> nbformat.NotebookNode:
    """A notebook for the ``python3`` kernel (the name papermill and the tests expect)."""
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def block_notebook(block: int) -> nbformat.NotebookNode:
    name, focus, grid = GRIDS[block]
    cells = [
        new_markdown_cell(f"# Block {block}: {focus}\n\nRun with papermill, e.g. "
                          f"`papermill notebooks/{name}.ipynb out.ipynb -p preset small`, or "
                          f"`flyvis-study block {block} --preset small`."),
        new_code_cell(COMMON + grid, metadata={"tags": ["parameters"]}),
        new_code_cell(
            "from pathlib import Path\n\n"
            "from IPython.display import Markdown, display\n\n"
            "from flyvis_study.report.figures import distribution_figure, embedding_figure, trajectory_figure\n"
            "from flyvis_study.report.verdicts import block_verdict\n"
            "from flyvis_study.study.blocks import BLOCK_TITLES, run_block\n"
            "from flyvis_study.study.comparison import paired_comparison\n"
            "from flyvis_study.study.results import load_block\n"
            "from flyvis_study.study.statistics import variance_table\n\n"
            f"BLOCK = {block}\n"
            "out_dir = str(Path(out_dir).resolve())\n"
            "display(Markdown(f\"## {BLOCK_TITLES[BLOCK]} (preset `{preset}`)\"))"),
        new_code_cell(
            f"result = run_block(BLOCK, out_dir, preset=preset, replicates=int(replicates), seed_mode=seed_mode,\n"
            f"                   seed_base=int(seed_base), sim_seeds=sim_seeds, train_seeds=train_seeds,\n"
            f"                   workers=int(workers), scheduler=scheduler, device=device, cache_dir=cache_dir,\n"
            f"                   overrides=dict(overrides), progress=False"
            + (f", {GRID_ARGS[block]}" if GRID_ARGS[block] else "") + ")\n"
            "print(f\"{len(result.specs)} runs; block file {result.nc_path}\")"),
        new_markdown_cell("### Resolved configuration (first run; seeds differ per run)"),
        new_code_cell("import yaml\n\nspec = result.specs[0]\n"
                      "print(yaml.safe_dump(spec.resolved().model_dump(mode='json'), sort_keys=False))\n"
                      "print('seed pairs:', sorted({(s.sim_seed, s.train_seed, s.seed_mode) for s in result.specs}))"),
        new_markdown_cell("### Variance table (mean / std / CV / min; robust and fragile flags)"),
        new_code_cell("display(variance_table(result.statistics).round(4))"),
        new_markdown_cell("### Ranking (configs with >= 3 runs)"),
        new_code_cell("display(result.ranking.round(4))"),
        new_markdown_cell("### Distributions per config"),
        new_code_cell("fig = distribution_figure(result.dataset)"),
        new_markdown_cell("### R2 trajectories (blue band: joint phase, orange band: V_rest-focus phase)"),
        new_code_cell("fig = trajectory_figure(result.dataset)"),
        new_markdown_cell("### Embeddings of representative runs (median conn_R2 per config)"),
        new_code_cell("fig = embedding_figure(result.dataset, out_dir)"),
        new_markdown_cell("### Paired comparison (same seed pairs)"),
        new_code_cell(
            "comparisons = []\n"
            "if not compare_with and BLOCK != 0 and (Path(out_dir) / 'block0.nc').is_file():\n"
            "    compare_with = str(Path(out_dir) / 'block0.nc')  # the standard-training baseline\n"
            "if compare_with and Path(compare_with).is_file():\n"
            "    baseline = load_block(compare_with)\n"
            "    for cfg in result.statistics.index:\n"
            "        for metric in ('V_rest_R2', 'connectivity_R2', 'tau_R2'):\n"
            "            comparisons.append(paired_comparison(baseline, result.dataset, metric, treatment_config=cfg))\n"
            "    import pandas as pd\n"
            "    display(pd.DataFrame(comparisons)[['treatment_config', 'metric', 'n_pairs', 'mean_baseline',\n"
            "            'mean_treatment', 'mean_difference', 'ci95_low', 'ci95_high', 'effect_size_dz',\n"
            "            'wilcoxon_p', 'ttest_p']].round(4))\n"
            "else:\n"
            "    print('no baseline block given (parameter compare_with)')"),
        new_markdown_cell("### Verdict"),
        new_code_cell("display(Markdown(block_verdict(BLOCK, result.statistics, result.ranking, comparisons, preset)))"),
    ]
    return _notebook(cells)


def summary_notebook() -> nbformat.NotebookNode:
    cells = [
        new_markdown_cell("# Study summary: does two-stage training raise V_rest_R2 while keeping conn_R2?"),
        new_code_cell('reports_dir = "reports"   # folder holding blockN.nc files\n'
                      'baseline_block = 0        # standard training\n', metadata={"tags": ["parameters"]}),
        new_code_cell(
            "from pathlib import Path\n\nimport pandas as pd\nfrom IPython.display import Markdown, display\n\n"
            "from flyvis_study.study.comparison import describe_comparison, paired_comparison\n"
            "from flyvis_study.study.results import load_block\n"
            "from flyvis_study.study.statistics import config_statistics\n\n"
            "blocks = {int(p.stem[5:]): load_block(p) for p in sorted(Path(reports_dir).glob('block[0-9].nc'))}\n"
            "print('blocks found:', sorted(blocks))"),
        new_markdown_cell("### Per-block statistics"),
        new_code_cell(
            "rows = []\nfor b, ds in blocks.items():\n    st = config_statistics(ds)\n"
            "    for cfg, r in st.iterrows():\n"
            "        rows.append({'block': b, 'config': cfg, 'runs': r['n_runs'], 'conn_R2': r['connectivity_R2_mean'],\n"
            "                     'conn_CV': r['connectivity_R2_cv'], 'V_rest_R2': r['V_rest_R2_mean'],\n"
            "                     'V_rest_CV': r['V_rest_R2_cv'], 'tau_R2': r['tau_R2_mean'],\n"
            "                     'cluster_acc': r['cluster_accuracy_mean'], 'robust': r['robust'], 'fragile': r['fragile']})\n"
            "table = pd.DataFrame(rows)\ndisplay(table.round(4))"),
        new_markdown_cell("### Two-stage vs standard on shared seed pairs"),
        new_code_cell(
            "comparisons = []\n"
            "if baseline_block in blocks:\n"
            "    base = blocks[baseline_block]\n"
            "    for b, ds in blocks.items():\n"
            "        if b == baseline_block:\n            continue\n"
            "        for cfg in config_statistics(ds).index:\n"
            "            for metric in ('V_rest_R2', 'connectivity_R2'):\n"
            "                c = paired_comparison(base, ds, metric, treatment_config=cfg)\n"
            "                c['block'] = b\n                comparisons.append(c)\n"
            "if comparisons:\n"
            "    display(pd.DataFrame(comparisons)[['block', 'treatment_config', 'metric', 'n_pairs', 'mean_baseline',\n"
            "            'mean_treatment', 'mean_difference', 'ci95_low', 'ci95_high', 'effect_size_dz', 'wilcoxon_p']].round(4))\n"
            "else:\n    print('need the baseline block and at least one two-stage block')"),
        new_markdown_cell("### Answer"),
        new_code_cell(
            "lines = []\nfor c in comparisons:\n    lines.append(f\"- block {c['block']}: \" + describe_comparison(c))\n"
            "vr = [c for c in comparisons if c['metric'] == 'V_rest_R2' and c['n_pairs'] > 0]\n"
            "cn = {(c['block'], c['treatment_config']): c for c in comparisons if c['metric'] == 'connectivity_R2'}\n"
            "answer = []\nfor c in vr:\n    k = cn.get((c['block'], c['treatment_config']))\n"
            "    raised = c['ci95_low'] > 0\n    kept = k is not None and k['ci95_low'] > -0.02\n"
            "    answer.append(f\"{c['treatment_config']} (block {c['block']}): V_rest_R2 \"\n"
            "                  f\"{'raised (CI above 0)' if raised else 'not shown to rise (CI includes or is below 0)'}; \"\n"
            "                  f\"conn_R2 {'kept (CI lower bound > -0.02)' if kept else 'not shown to be kept'}.\")\n"
            "display(Markdown('\\n'.join(lines + [''] + ['**Answer:** ' + ' '.join(answer) if answer else\n"
            "                 '**Answer:** not enough paired runs yet.'])))"),
    ]
    return _notebook(cells)


def explore_notebook() -> nbformat.NotebookNode:
    cells = [
        new_markdown_cell("# Explore one run interactively (JupyterLab)\n\nTrain one run, look at its "
                          "recovered parameters, functions and R2 trajectory."),
        new_code_cell('config = "two_stage.yaml"   # params/ file: two_stage.yaml or gold_standard.yaml\n'
                      'preset = "tiny"\nsim_seed = 0\ntrain_seed = 0\nout_dir = "reports/explore"\n'
                      'device = "cpu"\noverrides = {}\n', metadata={"tags": ["parameters"]}),
        new_code_cell(
            "import json\nfrom pathlib import Path\n\nfrom IPython.display import Image, display\n\n"
            "from flyvis_study.config import PARAMS_DIR, load_run_config\nfrom flyvis_study.study.run import run_training\n\n"
            "cfg = load_run_config(PARAMS_DIR / config, preset=preset,\n"
            "                      overrides={**overrides, 'simulation.seed': sim_seed, 'training.seed': train_seed})\n"
            "record = run_training(cfg, out_dir, device=device, progress=False)\n"
            "print(json.dumps({k: v for k, v in record.items() if not isinstance(v, dict)}, indent=1))"),
        new_code_cell("display(Image(str(Path(out_dir) / 'plots' / 'run.png')))"),
    ]
    return _notebook(cells)


def main() -> None:
    for block, (name, _, _) in GRIDS.items():
        nbformat.write(block_notebook(block), HERE / f"{name}.ipynb")
    nbformat.write(summary_notebook(), HERE / "study_summary.ipynb")
    nbformat.write(explore_notebook(), HERE / "explore.ipynb")


if __name__ == "__main__":
    main()
