# ---
# jupyter:
#   jupytext:
#     formats: ipynb,sources//py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Study summary: does two-stage training raise V_rest_R2 while keeping conn_R2, and what limits V_rest?
#
# First, what limits V_rest here, from the blocks with their own controls (block 7, what limits
# V_rest: the message offset, the training target, the silent anchor, the phase split; block 6,
# the V_rest levers), each cell against the gold standard on shared seed pairs, with the caveats
# of this study. Then each such block's answers: (1) its focus comparison at equal budget (block
# 6: two-stage against standard training for the same 2 epochs; block 7: two-stage with the
# constant schedule against standard training with it, the phase split's own effect); (2) which
# cell raises V_rest_R2 most over the gold standard, at what cost in conn_R2 and tau_R2. Then
# every other block (1-5) against the standard-training baseline (block 0).
# A config **raises V_rest_R2** when it has at least 8 seed pairs and the 95 % t interval of its
# paired difference lies above 0, and **keeps conn_R2** when the lower end of that interval is
# above -0.02 (`report.verdicts`, `study.comparison`). Every R2 is named with its definition:
# **affine** (squared Pearson r of the fit learned = a * true + b; the plain names V_rest_R2,
# conn_R2, tau_R2), **identity** (about learned = true on the seed's inliers; `_identity`) or the
# field's convention `inliers [all] (% dropped)` (`_field`), and tau and V_rest with their readout
# (**plain**, f_theta at message 0; **corrected**, at the learned silent message: `_corrected`).
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
from flyvis_study.resources import project_path
from flyvis_study.study.blocks import block_definition

blocks = S.load_blocks(reports_dir)
comparisons = S.study_comparisons(blocks, baseline_block)
levers = S.lever_comparisons(blocks)
display(Markdown("\n\n".join(S.scope(blocks))))  # the presets, and any block whose runs did not converge
display(Markdown(S.vrest_limits(blocks, levers)))

# %% [markdown]
# ## Answers of the blocks with their own controls

# %%
display(Markdown(S.lever_answers(levers)))

# %% [markdown]
# ## The blocks with their own controls, pair by pair
# Per block: the paired plot, one line per seed pair from each control to each arm, with the mean
# paired differences and their 95 % t intervals; the forest plot of every arm against the
# controls and of each axis's effect, per metric under every R2 definition and readout; the signed
# V_rest error per cell type under both readouts; V_rest_R2 during training per arm (in-loop,
# affine; orange: two-stage's V_rest-focus phases; dotted: epoch boundaries); the cells in the
# field's convention.

# %%
for number in sorted({c.block for c in levers}):
    own = [c for c in levers if c.block == number]
    display(Markdown(f"### Block {number}"))
    control = block_definition(number).controls[-1]
    for fig in (L.paired_lines_figure(own, f"vs {control}"), L.forest_figure(own),
                L.type_error_figure(blocks[number], project_path(reports_dir)),
                L.vrest_trajectory_figure(blocks[number])):
        if fig is not None:
            display(fig)
            plt.close(fig)
    display(L.field_table(blocks[number]))

# %% [markdown]
# ## Blocks 1-5 against the baseline (block 0)

# %%
display(Markdown(S.answer(comparisons)))

# %% [markdown]
# ## Every config against the baseline, pair by pair
# Left: each metric per seed pair under the baseline and under each config (red: lower under the
# config). Right: the mean paired difference with its 95 % t interval per config and metric.

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
