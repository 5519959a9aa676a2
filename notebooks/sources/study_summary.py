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
# # Study summary: does two-stage training raise V_rest_R2 while keeping conn_R2, and what does?
#
# Two questions, answered from block 6 (V_rest levers) when it is in `reports_dir`: (1) does
# two-stage training raise V_rest_R2 while keeping conn_R2 *at equal budget* (against standard
# training for the same 2 epochs); (2) which lever (training arm, blank fraction, noise level)
# raises V_rest_R2 most over the gold standard, at what cost in conn_R2 and tau_R2. Then every
# other block (1-5) against the standard-training baseline (block 0) on the seed pairs they share.
# A config **raises V_rest_R2** when the 95 % bootstrap CI of its paired difference lies above 0,
# and **keeps conn_R2** when the lower end of that CI is above -0.02 (`report.verdicts`).
# Every R2 is named with its definition: **affine** (squared Pearson r of the fit learned =
# a * true + b, `evaluation.recovery.r2_affine`; the plain names V_rest_R2, conn_R2, tau_R2) or
# **identity** (1 - SS_res / SS_tot about learned = true on inliers, `r2_identity`; the
# `_identity` names). Blocks 1-5 are compared under the affine definition.
#
# Run it: `flyvis-study report --out reports` or
# `papermill notebooks/study_summary.ipynb out.ipynb -p reports_dir reports`.

# %% tags=["parameters"]
reports_dir = "reports"  # folder holding blockN.nc files; a relative path is taken from the project folder
baseline_block = 0  # the standard-training block every other block is compared with

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from flyvis_study.report import levers as L
from flyvis_study.report import summary as S

blocks = S.load_blocks(reports_dir)
comparisons = S.study_comparisons(blocks, baseline_block)
levers = S.lever_comparisons(blocks)

# %% [markdown]
# ## Answers from block 6: at equal budget, and what recovers V_rest

# %%
display(Markdown(S.lever_answers(levers)))

# %% [markdown]
# ## Block 6, pair by pair
# The paired plot: one line per seed pair from standard_2_epochs (the control at equal budget) to
# each arm, with the mean paired differences and their 95 % CIs. The forest plot: every arm
# against standard_1_epoch and standard_2_epochs, and the blank effect, per metric under both R2
# definitions. Then V_rest_R2 during training per arm (in-loop, affine; orange: two-stage's
# V_rest-focus phases; dotted: epoch boundaries).

# %%
if levers:
    for fig in (L.paired_lines_figure(levers, "vs standard_2_epochs"), L.forest_figure(levers),
                L.vrest_trajectory_figure(blocks[6])):
        if fig is not None:
            display(fig)
            plt.close(fig)
    display(L.lever_table(blocks[6]).round(4))

# %% [markdown]
# ## Blocks 1-5 against the baseline (block 0)

# %%
display(Markdown(S.answer(comparisons)))

# %% [markdown]
# ## Every config against the baseline, pair by pair
# Left: each metric per seed pair under the baseline and under each config (red: lower under the
# config). Right: the mean paired difference with its 95 % bootstrap CI per config and metric.

# %%
fig = S.figure(comparisons)
if fig is not None:
    plt.show()

# %% [markdown]
# ## Per-block statistics

# %%
display(S.block_table(blocks))

# %% [markdown]
# ## Paired comparisons with the baseline

# %%
display(S.comparison_table(comparisons))

# %% [markdown]
# ## Provenance of the block files

# %%
display(Markdown(S.provenance_table(blocks)))
