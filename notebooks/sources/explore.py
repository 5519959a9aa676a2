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
# # Explore one run
#
# Train one run (standard or two-stage) at a small scale and look at what it recovered: the
# corrected weights, tau and V_rest against the truth, the embedding by cell type, the R2
# trajectory with its phases and the loss.

# %% tags=["parameters"]
config = "two_stage.yaml"  # a base config shipped with the package (two_stage.yaml, gold_standard.yaml) or a path
preset = "tiny"  # tiny | small | full
sim_seed = 0  # simulation.seed (data)
train_seed = 0  # training.seed (initialisation, batches)
out_dir = "reports/explore"  # run folder; a relative path is taken from the project folder
device = "cpu"  # cpu | cuda
overrides = {}  # dotted config overrides, e.g. {"training.n_epochs": 1}
cache_dir = ""  # dataset cache; empty: ~/.cache/flyvis_study/datasets

# %%
from IPython.display import Image, display

from flyvis_study.config import load_run_config
from flyvis_study.resources import config_file, project_path
from flyvis_study.study.run import run_training

cfg = load_run_config(config_file(config), preset=preset,
                      overrides={**overrides, "simulation.seed": sim_seed, "training.seed": train_seed})
run_dir = project_path(out_dir)
record = run_training(cfg, run_dir, device=device, progress=False, cache=cache_dir or None)
print({k: v for k, v in record.items() if isinstance(v, (int, float, str))})

# %%
display(Image(str(run_dir / "plots" / "run.png")))
