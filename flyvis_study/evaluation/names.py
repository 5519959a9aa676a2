"""The metric names, spelled once (the seed's names), and the columns of metrics.log.

Headline metrics of a run (definitions: ``evaluation.recovery``, ``clustering``,
``prediction``): connectivity_R2, tau_R2, V_rest_R2, cluster_accuracy, test_R2,
test_pearson. metrics.log keeps the seed's CSV columns (epoch, iteration, connectivity_r2,
vrest_r2, tau_r2, phase); ``TRAJECTORY_METRICS`` maps each logged column to the headline
metric it tracks in the loop.

Each recovered-parameter R2 exists under two named definitions (``R2_DEFINITION_OF``;
formulas in ``evaluation.recovery``): the seed's ``affine`` one under the plain name, and the
``identity`` one under the name + ``_identity`` (``IDENTITY_METRICS``).
"""

HEADLINE_METRICS = ("connectivity_R2", "tau_R2", "V_rest_R2", "cluster_accuracy", "test_R2", "test_pearson")
LOG_COLUMNS = ("epoch", "iteration", "connectivity_r2", "vrest_r2", "tau_r2", "phase")
TRAJECTORY_METRICS = {"connectivity_r2": "connectivity_R2", "vrest_r2": "V_rest_R2", "tau_r2": "tau_R2"}
IDENTITY_METRICS = ("connectivity_R2_identity", "tau_R2_identity", "V_rest_R2_identity")
R2_DEFINITION_OF = {"connectivity_R2": "affine", "tau_R2": "affine", "V_rest_R2": "affine",
                    **{name: "identity" for name in IDENTITY_METRICS}}
