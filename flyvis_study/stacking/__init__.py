"""Replicate stacking: R runs of one graph trained together, fenced off from the single-run path.

``train.train_stack`` trains several runs (a ``Replica`` each) with one stacked loss
(``loss``, over ``model.StackedGNN``'s replica dimension) and one multi-tensor Adam step
(``adam``); ``study.run.run_stack`` and ``study.runner`` use it when a block's ``stack`` > 1.
Measured, it does not pay: per run, stacked over alone, 0.92-1.20 on a 2-core CPU and 1.08-2.2
on an H200 at full scale (README, "Replicate stacking"), so the default stack is 1 everywhere.
"""
