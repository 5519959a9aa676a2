# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The block's title, question and usage (written per block by tools/block_notebooks.py)

# %% tags=["parameters"]
# the block's parameters with their defaults and meanings (written per block by tools/block_notebooks.py)

# %%
from IPython.display import Markdown, display

from flyvis_study import run_block
from flyvis_study.report import block_report as R
from flyvis_study.study.blocks import BLOCKS, block_parameters

BLOCK = 0
params = block_parameters(BLOCK, **{name: globals()[name] for name in BLOCKS[BLOCK].parameters.model_fields})
R.show_parameters(BLOCK, params)
result = run_block(BLOCK, params, progress=False)
display(Markdown(R.header(result)))

# %% [markdown]
# The report (`report.block_report`): the verdict or the answers first, then the tables and
# figures they rest on, the resolved configuration collapsed, and how to read it all at the end.
# Add cells below to look further: `result` is the block (`flyvis_study.Block`, as `open_block`
# gives it): `result.ds` its xarray Dataset, `result.factorial` the runs by factor, `result.run(...)`
# one run; `comparisons` every paired comparison.

# %%
comparisons = R.show_block_report(result)

# %%
display(Markdown(R.how_to_read(result)))
