# ---
# jupyter:
#   jupytext:
#     formats: ipynb,sources//py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Block 4: training budget (epochs x augmentation)
#
# **Question.** Does more training help V_rest, and at what cost in time? The grid crosses the number of epochs with the data augmentation loop (both set the iteration budget). Note: configs here differ in budget, so compare them with that in mind.
#
# Run it from the project folder: `papermill notebooks/block4.ipynb out.ipynb -p n_epochs 2 -p augmentation_loop 25`, or `flyvis-study block 4 --preset small -p 'n_epochs=[2, 3]' -p 'augmentation_loop=[20]'` (which also renders the HTML report).

# %% tags=["parameters"]
# --- scale and seeds -------------------------------------------------------
preset = "tiny"  # tiny | small | full (sizes and budgets; full: the flyvis network flow/0000/000 as ground truth)
replicates = 4  # runs per config
seed_mode = "generalisation"  # generalisation (both seeds vary) | robustness (fixed sim seed) | both
seed_base = 0  # first suggested seed; shared by all blocks, so they pair up
sim_seeds = None  # explicit simulation seeds (list), overrides the suggestion
train_seeds = None  # explicit training seeds (list, same length as sim_seeds)
ground_truth_models = []  # flyvis model ids, e.g. ["flow/0000/000", "flow/0000/001"]: each run on each network; []: the config's own
stack = None  # runs trained together per process (replicate stacking, e.g. 12 on a GPU); None or 1: each run alone
# --- execution ---------------------------------------------------------------
workers = 0  # positive: a Dask LocalCluster with this many workers
scheduler = ""  # address of a running Dask scheduler (e.g. dask-jobqueue on SLURM)
device = "cpu"  # cpu | cuda
out_dir = "reports"  # block outputs; a relative path is taken from the project folder
cache_dir = ""  # dataset cache; empty: ~/.cache/flyvis_study/datasets
overrides = {}  # dotted config overrides for every run, e.g. {"training.n_epochs": 3}
compare_with = ""  # a block file for the paired comparison; empty: block0.nc in out_dir, if any
n_epochs = [2, 3]  # training.n_epochs values
augmentation_loop = [20, 25, 30]  # training.data_augmentation_loop values (grid: all pairs)

# %%
from IPython.display import Markdown, display

from flyvis_study.report import block_report as R
from flyvis_study.study.blocks import BLOCKS, block_parameters, run_block

BLOCK = 4
params = block_parameters(BLOCK, **{name: globals()[name] for name in BLOCKS[BLOCK].parameters.model_fields})
result = run_block(BLOCK, params, progress=False)
comparisons = R.baseline_comparisons(result)
display(Markdown(R.header(result)))

# %% [markdown]
# The report (`report.block_report`): verdict and key figure, the tables, the other figures and,
# collapsed, the resolved configuration; how to read it is at the end. Add cells below to look
# further; `result.dataset` is the block's xarray Dataset.

# %%
R.show_report(result, comparisons)

# %% [markdown]
# ### How to read this report
# - *Statistics*: per config and metric, the number of runs, mean, std (ddof 1), CV and min.
#   **robust**: conn_R2 and tau_R2 with CV < 5 % and min > 0.90, V_rest_R2 with CV < 20 % and
#   min > 0.40, cluster_accuracy with CV < 10 % and min > 0.80. **fragile**: any metric with
#   CV > 25 % or a run below half its mean, or a failed run. The line under the table says which
#   rule each config meets or misses.
# - *Ranking* (configs with >= 3 runs): score = mean(conn)(1 - CV(conn)) + 0.5 mean(V_rest)(1 - CV(V_rest)).
# - *Paired comparison*: this block's configs minus the standard-training baseline on the same
#   (sim_seed, train_seed) pairs: mean difference, 95 % bootstrap CI, effect size d_z, Wilcoxon
#   and paired-t p-values. With few pairs the CI, not the p-value, is the thing to read.
# - Every R2 here is the squared Pearson correlation of an affine fit, learned = a * true + b
#   (`evaluation.recovery.r2_affine`); conn_R2 is taken on the corrected weights W*.
