"""The metric names, spelled once (the seed's names), and the columns of metrics.log.

Headline metrics of a run (definitions: ``evaluation.recovery``, ``clustering``,
``prediction``): connectivity_R2, tau_R2, V_rest_R2, cluster_accuracy, test_R2,
test_pearson. metrics.log keeps the seed's CSV columns (epoch, iteration, connectivity_r2,
vrest_r2, tau_r2, phase); ``TRAJECTORY_METRICS`` maps each logged column to the headline
metric it tracks in the loop.

Each recovered-parameter R2 exists under two named definitions (``R2_DEFINITION_OF``;
formulas in ``evaluation.recovery``): the seed's ``affine`` one under the plain name, and the
``identity`` one under the name + ``_identity`` (``IDENTITY_METRICS``), and under the
field's convention (``FIELD_SUFFIXES``: identity R2 on the inliers of the field's thresholds,
on all, and the share dropped; ``evaluation.recovery.field_metrics``).

tau and V_rest are read out twice (``READOUT_SUFFIX``; ``evaluation.recovery``): ``plain``
(f_theta at message 0, the seed's) under the plain names, ``corrected`` (at the learned
silent message) under the names + ``_corrected``.
"""

HEADLINE_METRICS = ("connectivity_R2", "tau_R2", "V_rest_R2", "cluster_accuracy", "test_R2", "test_pearson")
LOG_COLUMNS = ("epoch", "iteration", "connectivity_r2", "vrest_r2", "tau_r2", "phase")
TRAJECTORY_METRICS = {"connectivity_r2": "connectivity_R2", "vrest_r2": "V_rest_R2", "tau_r2": "tau_R2"}
IDENTITY_METRICS = ("connectivity_R2_identity", "tau_R2_identity", "V_rest_R2_identity")
READOUT_SUFFIX = {"plain": "", "corrected": "_corrected"}
FIELD_SUFFIXES = ("_R2_field", "_R2_field_all", "_field_dropped")
R2_DEFINITIONS = {  # in words, for reports and logs (formulas: evaluation.recovery)
    "affine": "squared Pearson r of the least-squares fit learned = a * true + b",
    "identity": "1 - SS_res / SS_tot about learned = true, on the inliers |learned - true| <= threshold",
    "field": "the identity R2 on the inliers of the field's thresholds, printed inliers [all] (% dropped)",
}
R2_DEFINITION_OF = {"connectivity_R2": "affine", "tau_R2": "affine", "V_rest_R2": "affine",
                    **{name: "identity" for name in IDENTITY_METRICS}}


def definition_of(metric: str) -> str:
    """The R2 definition a metric name carries: affine, identity or field (any readout)."""
    name = metric.removesuffix(READOUT_SUFFIX["corrected"])
    if name.endswith(("_R2_field", "_R2_field_all")):
        return "field"
    return R2_DEFINITION_OF.get(name, "")


def readout_of(metric: str) -> str:
    """The readout a metric name carries (``READOUT_SUFFIX``): corrected or plain."""
    return "corrected" if metric.endswith(READOUT_SUFFIX["corrected"]) else "plain"


def _readouts(*names: str) -> tuple[str, ...]:
    """Each name under every readout (``names.READOUT_SUFFIX``)."""
    return tuple(n + suffix for suffix in READOUT_SUFFIX.values() for n in names)


def _field(name: str) -> tuple[str, ...]:
    return tuple(name + suffix for suffix in FIELD_SUFFIXES)


EVALUATION_SECTIONS: dict[str, tuple[str, ...]] = {
    "connectivity": ("connectivity_R2", "connectivity_slope", "connectivity_R2_raw", "connectivity_slope_raw",
                     "connectivity_n_edges", "connectivity_R2_identity", "connectivity_outlier_share",
                     "connectivity_outlier_threshold", *_field("connectivity")),
    "tau": _readouts("tau_R2", "tau_slope", "tau_R2_identity", "tau_outlier_share", "tau_outlier_threshold",
                     *_field("tau")),
    "V_rest": _readouts("V_rest_R2", "V_rest_slope", "V_rest_R2_inliers", "V_rest_R2_type_median",
                        "V_rest_n_inliers", "V_rest_inlier_threshold", "V_rest_R2_identity",
                        "V_rest_outlier_share", *_field("V_rest")),
    "clustering": ("cluster_accuracy", "cluster_ARI", "cluster_NMI"),
    "one_step_test": ("test_pearson", "test_R2"),
    "rollout": ("rollout_pearson", "rollout_pearson_std", "rollout_rmse", "rollout_rmse_std", "rollout_frames"),
}
METRIC_NAMES = tuple(name for names in EVALUATION_SECTIONS.values() for name in names)
