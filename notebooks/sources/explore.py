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
# # Explore the study's results
#
# A guided tour that trains nothing: it opens the committed example blocks
# (`reports/examples/small/`: block 0, standard training, and block 1, two-stage training, on
# the same 4 seed pairs at the small preset), compares them, and looks inside the median run of
# each. Every number below is read from those files; every R2 is the squared Pearson
# correlation of an affine fit of learned against true values (the seed's definition,
# `evaluation/recovery.py`).
#
# The last section, off by default (`train_live = True` to run it), trains one tiny run here
# with a progress bar and looks at it the same way.

# %% tags=["parameters"]
examples_dir = "reports/examples/small"  # block files with their runs/ folder beside them
train_live = False  # train one run here and look at it (tiny preset: about a minute on 2 cores)
preset = "tiny"  # preset of the live run: tiny | small | full
overrides = {}  # dotted config overrides of the live run, e.g. {"training.n_epochs": 1}
out_dir = "reports/explore"  # run folder of the live run (relative: from the project folder)
cache_dir = ""  # dataset cache of the live run; empty: ~/.cache/flyvis_study/datasets

# %%
import matplotlib.pyplot as plt
import pandas as pd

import flyvis_study as fs

standard = fs.open_block(f"{examples_dir}/block0.nc")
two_stage = fs.open_block(f"{examples_dir}/block1.nc")
print(standard.configs, two_stage.configs, "preset:", two_stage.ds.attrs["preset"])

# %% [markdown]
# ## The blocks as xarray Datasets
#
# Metrics live on `config x sim_seed x train_seed` (a cell without a run is NaN); R2
# trajectories on `step` (global iteration); statistics on `config x metric x statistic`.

# %%
two_stage.ds[["connectivity_R2", "V_rest_R2", "tau_R2"]]

# %%
# one config, every seed pair: .sel, then the run table's groupby
print(two_stage.ds["V_rest_R2"].sel(config="two_stage").to_series().dropna())
two_stage.runs.groupby("config")[["connectivity_R2", "tau_R2", "V_rest_R2"]].agg(["mean", "std"]).round(3)

# %%
two_stage.ds["summary"].sel(metric=["connectivity_R2", "V_rest_R2"], statistic=["n", "mean", "std", "cv"]).to_dataframe()

# %% [markdown]
# ## Two-stage against standard, paired on shared seed pairs

# %%
rows = []
for metric in ("connectivity_R2", "tau_R2", "V_rest_R2"):
    c = fs.compare(standard, two_stage, metric)
    rows.append({"metric": metric, "pairs": c.n_pairs, "gold standard": c.mean_baseline,
                 "two-stage": c.mean_treatment, "difference": c.mean_difference,
                 "t interval": f"[{c.t_low:+.3f}, {c.t_high:+.3f}]", "sign-flip p": c.sign_flip_p,
                 "d_z": c.effect_size_dz})
pd.DataFrame(rows).set_index("metric").round(3)

# %%
fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
for ax, metric in zip(axes, ("connectivity_R2", "tau_R2", "V_rest_R2")):
    c = fs.compare(standard, two_stage, metric)
    for (s, t), a, b in zip(c.pairs, c.baseline, c.treatment):
        ax.plot([0, 1], [a, b], marker="o", label=f"pair ({s}, {t})")
    ax.set_xticks([0, 1], ["standard", "two-stage"])
    ax.set(title=metric, xlim=(-0.3, 1.3))
axes[0].legend(fontsize=7)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Inside the median run of each block
#
# The run whose conn_R2 is closest to its block's median: its trajectory with the phases shaded
# (blue: joint, orange: V_rest focus), what it recovered against the truth, its embedding by
# cell type, and its learned functions.

# %%
median = two_stage.median_run()
print(median.path.name)
{k: median.metrics[k] for k in ("status", "connectivity_R2", "tau_R2", "V_rest_R2", "cluster_accuracy",
                                "training_time_min")}

# %%
median.trajectory.head()

# %%
median.plot_trajectory()
plt.show()

# %%
median.plot_recovered()
plt.show()

# %%
median.plot_embedding()
plt.show()

# %%
median.plot_functions()
plt.show()

# %%
baseline = standard.median_run()
fig, axes = plt.subplots(1, 2, figsize=(12, 3.4))
baseline.plot_trajectory(axes[0])
median.plot_trajectory(axes[1])
axes[0].set_title(f"standard: {baseline.path.name}", fontsize=8)
axes[1].set_title(f"two-stage: {median.path.name}", fontsize=8)
plt.show()

# %% [markdown]
# ## Optional: train one run here and look at it the same way

# %%
if train_live:
    from flyvis_study.config import load_run_config
    from flyvis_study.resources import project_path
    from flyvis_study.study.run import run_training

    cfg = load_run_config("two_stage.yaml", preset=preset, overrides=overrides)
    run_training(cfg, project_path(out_dir), progress=True, cache=cache_dir or None)
    live = fs.open_run(out_dir)
    print({k: live.metrics[k] for k in ("status", "connectivity_R2", "tau_R2", "V_rest_R2")})
    live.plot_trajectory()
    live.plot_recovered()
    plt.show()
else:
    print("train_live is False: nothing trained")
