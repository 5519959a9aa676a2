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
# # An adaptive exploration: which config maximises V_rest_R2 at the gold standard's connectivity?
#
# The study design's own loop (`../shared/seed/`): each iteration picks a parent node, mutates
# one parameter (or replicates a promising node on its next seed pair), runs the config as an
# ordinary run, and writes the seed's two files: the analysis log `<name>_analysis.md`
# (appended) and the working memory `<name>_memory.md` (rewritten). The proposer is the seed's
# rule, a UCB tree, or one of Optuna's samplers (TPE, GP, random); every trial lives in an
# Optuna study (`<name>.optuna.db` beside the runs), so a killed exploration resumes where it
# stopped, and `optuna-dashboard sqlite:///<out_dir>/<name>.optuna.db` shows it live.
#
# Objective: maximise `objective` (affine R2) subject to connectivity_R2 >= the `reference`
# config's on the same seed pair - `tolerance`. Every node's first run uses the first seed
# pair, so nodes pair up with each other and with the reference.
#
# Run it from the project folder: `papermill notebooks/explore_search.ipynb out.ipynb -p preset small
# -p budget 12`, or `flyvis-study explore --preset small -p budget=12` (which also renders the HTML
# report).

# %% tags=["parameters"]
name = "exploration"  # the exploration: its Optuna study and its two log files
preset = "tiny"  # tiny | small | full
base_config = "two_stage.yaml"  # the config every node overrides
space = None  # {parameter: [allowed values]}; None: the seed's explorable set
budget = 24  # runs the search trains (the reference runs are counted apart)
proposer = "ucb"  # ucb | seed_rule | tpe | gp | random
objective = "V_rest_R2"  # the metric maximised (affine R2)
reference = "gold_standard"  # config of the reference runs (the constraint)
tolerance = 0.02  # feasible: conn_R2 at least the reference's on the same seeds minus this
seed_mode = "generalisation"  # replicate r: seeds (r, r) (generalisation) or (0, r) (robustness)
seed_base = 0  # first seed
max_replicates = 4  # seed pairs a node runs on at most
ucb_c = 0.05  # UCB exploration constant, in units of the objective
sampler_seed = 0  # the proposer's random seed
storage = ""  # Optuna storage URL; empty: sqlite:///<out_dir>/<name>.optuna.db
workers = 0  # positive: a Dask LocalCluster with this many workers
scheduler = ""  # address of a running Dask scheduler
device = "cpu"  # cpu | cuda
out_dir = "reports/exploration"  # runs/ and the exploration's files
cache_dir = ""  # dataset cache; empty: ~/.cache/flyvis_study/datasets
overrides = {}  # dotted config overrides for every run
threads_per_run = None  # torch threads of each run; None: default

# %%
given = [name for name in globals() if not name.startswith("_")]  # the parameters, and any papermill injected
from IPython.display import Markdown, display  # noqa: E402

from flyvis_study.exploration.logs import memory_path  # noqa: E402
from flyvis_study.exploration.search import run_exploration  # noqa: E402
from flyvis_study.report import exploration as R  # noqa: E402

params = R.notebook_parameters(given, globals())  # a misspelt or bad parameter: one line, nothing run
ex = run_exploration(params, progress=False)
display(Markdown(memory_path(ex.out_dir, params.name).read_text()))

# %% [markdown]
# ## The search
#
# Left: each run's objective (blue: feasible; red: infeasible or failed) and the best feasible
# node's mean after each run. Middle: the tree, each node at its first run and its mean
# objective, joined to its parent. Right: the best node against the reference on the seed pairs
# they share.

# %%
fig = R.figure(ex)

# %% [markdown]
# ## Every run and every node
#
# `ex.history` holds the trials (`ex.history.runs`) and the node statistics
# (`ex.history.stats()`); `ex.study` is the Optuna study (`ex.study.trials_dataframe()`).

# %%
R.trials_table(ex.history)

# %%
R.nodes_table(ex.history)
