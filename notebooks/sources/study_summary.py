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
# # Study summary: does two-stage training raise V_rest_R2 while keeping conn_R2?
#
# Every block found in `reports_dir` is compared with the standard-training baseline (block 0)
# on the seed pairs they share. A config **raises V_rest_R2** when the 95 % bootstrap CI of its
# paired difference lies above 0, and **keeps conn_R2** when the lower end of that CI is above
# -0.02 (`report.verdicts.study_answer`). Every R2 is the squared Pearson correlation of an
# affine fit (`evaluation.recovery.r2_affine`).
#
# Run it: `flyvis-study report --out reports` or
# `papermill notebooks/study_summary.ipynb out.ipynb -p reports_dir reports`.

# %% tags=["parameters"]
reports_dir = "reports"  # folder holding blockN.nc files; a relative path is taken from the project folder
baseline_block = 0  # the standard-training block every other block is compared with

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from flyvis_study.report import summary as S

blocks = S.load_blocks(reports_dir)
comparisons = S.study_comparisons(blocks, baseline_block)

# %% [markdown]
# ## Answer

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
