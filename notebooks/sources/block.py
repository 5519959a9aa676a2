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
given = [name for name in globals() if not name.startswith("_")]  # the parameters, and any papermill injected
from IPython.display import Markdown, display  # noqa: E402

from flyvis_study import run_block  # noqa: E402
from flyvis_study.report import block_report as R  # noqa: E402

BLOCK = 0
params = R.notebook_parameters(BLOCK, given, globals())  # a misspelt or bad parameter: one line, nothing run
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
