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
# # Block 6: V_rest levers
#
# **Questions.** (1) Does two-stage training raise V_rest_R2 while keeping conn_R2 *at equal
# budget*, i.e. against standard training for the same 2 epochs? (2) Which lever raises V_rest_R2
# most over the gold standard, and at what cost in conn_R2 and tau_R2? The levers:
# - **training arms** (each a named config, `study.blocks.ARMS`): `standard_1_epoch` (the gold
#   standard), `standard_2_epochs` (the budget-matched control), `two_stage`, `lr_drop` (every
#   group's LR x 0.1 from epoch 2 on, `training.epoch_lr_ratio`) and `two_stage_constant_schedule`
#   (two-stage with the regulariser coefficients held at their epoch-1 values,
#   `training.regulariser_schedule: constant`, which separates the phase split from the switch of
#   W L1 and f_theta L1 at epoch 2);
# - **data**: `blank_fraction` (`simulation.stimulus.blank_fraction`: each clip's first frames at
#   zero luminance, train and test clips alike, so neurons relax toward rest) and the process noise
#   level (`simulation.noise_model_level`).
#
# Every arm runs at every blank fraction and noise level on the same seed pairs, so every
# comparison is paired; `arm_levels` narrows one arm's levels (an incomplete factorial, e.g. the
# extra arms at blank 0 only), and a comparison whose cells were not run is left out. Every R2 is named with its definition: **affine** (the seed's: squared
# Pearson r of the fit learned = a * true + b; V_rest_R2, conn_R2, tau_R2) and **identity**
# (1 - SS_res / SS_tot about learned = true, on inliers; the `_identity` metrics, with the outlier
# share stored in each run file). Epochs are counted from 1 in prose (metrics.log counts from 0).
#
# Run it from the project folder: `flyvis-study block 6 --preset small -p 'arms=[standard_1_epoch, standard_2_epochs, two_stage]' -p 'blank_fraction=[0, 0.5]'`
# (add `lr_drop` to the arms with `-p 'arm_levels={lr_drop: {blank_fraction: [0]}}'` to run it at blank 0 only),
# or `papermill notebooks/block6.ipynb out.ipynb -p preset small`.

# %% tags=["parameters"]
# --- scale and seeds -------------------------------------------------------
preset = "tiny"  # tiny | small | full (sizes and budgets; full: the flyvis network flow/0000/000 as ground truth)
replicates = 4  # seed pairs (every cell of the factorial runs on each)
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
compare_with = ""  # unused here: block 6 compares its own arms (kept for the common parameters)
# --- the factorial -------------------------------------------------------------
arms = ["standard_1_epoch", "standard_2_epochs", "two_stage", "lr_drop", "two_stage_constant_schedule"]  # names of study.blocks.ARMS
blank_fraction = [0.0, 0.5]  # simulation.stimulus.blank_fraction values, each in [0, 1)
noise_level = [0.05]  # simulation.noise_model_level values (0.05: the default)
arm_levels = {}  # per arm, levels replacing the ones above for that arm, e.g. {"lr_drop": {"blank_fraction": [0.0]}}

# %%
import matplotlib.pyplot as plt
from IPython.display import HTML, Markdown, display

from flyvis_study.report import block_report as R
from flyvis_study.report import levers as L
from flyvis_study.study.blocks import BLOCKS, block_parameters, run_block

BLOCK = 6
params = block_parameters(BLOCK, **{name: globals()[name] for name in BLOCKS[BLOCK].parameters.model_fields})
result = run_block(BLOCK, params, progress=False)
display(Markdown(R.header(result)))

# %% [markdown]
# The report (`report.levers`): the two answers first, then the tables and figures they rest on.
# `result.dataset` is the block's xarray Dataset; `comparisons` (below) every paired comparison.

# %%
comparisons = L.show_report(result.dataset)

# %% [markdown]
# ### Statistics per config, one dot per run, and the configuration

# %%
display(R.variance_table(result.statistics))
fig = R.distribution_figure(result.dataset, ("V_rest_R2", "V_rest_R2_identity", "connectivity_R2",
                                             "connectivity_R2_identity", "tau_R2", "tau_R2_identity"))
display(fig)
plt.close(fig)
display(HTML(R.collapsed("first run's configuration, resolved (seeds and arms differ per run); click to open",
                         R.resolved_configuration(result))))

# %% [markdown]
# ### How to read this report
# - *Answers*: (1) two_stage minus standard_2_epochs on the same seed pairs, at each blank fraction
#   and noise level; (2) every cell minus the gold standard (standard_1_epoch at blank 0), ranked
#   by the V_rest_R2 gain, with its conn_R2 and tau_R2 change. V_rest_R2 is *raised* when the 95 %
#   bootstrap CI of the paired difference lies above 0; conn_R2 is *kept* when that CI's lower end
#   is above -0.02.
# - *Paired comparisons*: mean difference (arm - control), 95 % percentile-bootstrap CI, d_z (mean
#   / SD of the differences), paired t and Wilcoxon p. With 4 pairs the smallest two-sided
#   Wilcoxon p is 0.125: read the CI, not the p-value.
# - *Budget*: standard_1_epoch trains 1 epoch, every other arm 2 epochs of the same iterations.
#   standard_2_epochs is the control at equal budget.
# - *Epoch 2*: the per-epoch regulariser schedule switches W L1 and f_theta L1 on at epoch 2 (they
#   are 0 in epoch 1); the epoch-2 table says how far conn_R2 and V_rest_R2 fall in its first tenth.
# - *R2 definitions*: **affine** = squared Pearson r of the fit learned = a * true + b (conn_R2 on
#   the edges with |W* - W| <= 5; tau_R2, V_rest_R2 on every neuron); **identity** = 1 - SS_res /
#   SS_tot about learned = true on the inliers |learned - true| <= 5 (W*), 0.1 (tau), 0.5 (V_rest)
#   (`evaluation.recovery.r2_identity`); it is negative when the learned values are further from the
#   truth than the truth's mean is.
