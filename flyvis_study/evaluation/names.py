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

``METRICS`` is the typed catalogue: one ``Metric`` per name (section, R2 definition, readout,
units, meaning), derived from ``EVALUATION_SECTIONS`` and the meanings of the base names below;
run files carry each metric's definition, readout, units and meaning as variable attributes
(``study.record``). Adding a metric: its name in ``EVALUATION_SECTIONS`` and its base name's
meaning in ``_MEANING`` (a test checks that every metric has one).
"""

from dataclasses import dataclass

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


@dataclass(frozen=True)
class Metric:
    """One metric of a run: its name, evaluation section, R2 definition (affine, identity, field
    or "" when not an R2), readout (plain, corrected, or "" when not read from f_theta), units
    ("1": dimensionless) and meaning."""

    name: str
    section: str
    definition: str
    readout: str
    units: str
    meaning: str

    def attrs(self) -> dict[str, str]:
        """The netCDF variable attributes of the metric."""
        return {"long_name": self.meaning, "units": self.units, "section": self.section,
                "r2_definition": self.definition or "n/a", "readout": self.readout or "n/a"}


_QUANTITY = {"connectivity": "W* (corrected learned weights) against the true W",
             "tau": "learned tau against the true tau", "V_rest": "learned V_rest against the true V_rest"}
_MEANING = {  # base name (readout and field suffixes removed) -> (units, meaning)
    "connectivity_R2": ("1", "R2 of W* on the edges with |W* - W| <= 5"),
    "connectivity_slope": ("1", "slope of the affine fit of W* on W"),
    "connectivity_R2_raw": ("1", "R2 of the raw learned W (no gain correction) against W, every edge"),
    "connectivity_slope_raw": ("1", "slope of the affine fit of the raw learned W on W"),
    "connectivity_n_edges": ("edges", "edges kept for connectivity_R2 (|W* - W| <= 5)"),
    "connectivity_outlier_threshold": ("W units", "|W* - W| above which an edge is an outlier"),
    "tau_R2": ("1", "R2 of tau on every neuron"),
    "tau_slope": ("1", "slope of the affine fit of the learned tau on tau"),
    "tau_outlier_threshold": ("tau units", "|tau_hat - tau| above which a neuron is an outlier"),
    "V_rest_R2": ("1", "R2 of V_rest on every neuron"),
    "V_rest_slope": ("1", "slope of the affine fit of the learned V_rest on V_rest"),
    "V_rest_R2_inliers": ("1", "affine R2 of V_rest on the neurons with |error| <= the inlier threshold"),
    "V_rest_R2_type_median": ("1", "affine R2 of the per-cell-type median learned V_rest on the type's V_rest"),
    "V_rest_n_inliers": ("neurons", "neurons within the V_rest inlier threshold"),
    "V_rest_inlier_threshold": ("V units", "|V_hat - V_rest| within which a neuron is an inlier"),
    "cluster_accuracy": ("1", "cell-type accuracy of a GMM on the learned embedding (Hungarian matching)"),
    "cluster_ARI": ("1", "adjusted Rand index of the embedding's GMM clusters against the cell types"),
    "cluster_NMI": ("1", "normalised mutual information of the embedding's GMM clusters and the cell types"),
    "test_pearson": ("1", "one-step prediction on held-out clips: mean per-neuron Pearson r"),
    "test_R2": ("1", "one-step prediction on held-out clips: mean per-neuron R2 (no refit)"),
    "rollout_pearson": ("1", "rollout on a held-out clip: mean per-neuron Pearson r"),
    "rollout_pearson_std": ("1", "rollout: standard deviation of the per-neuron Pearson r"),
    "rollout_rmse": ("V units", "rollout: mean per-neuron RMSE of the voltage"),
    "rollout_rmse_std": ("V units", "rollout: standard deviation of the per-neuron RMSE"),
    "rollout_frames": ("frames", "frames of the rollout"),
}
for _q in ("connectivity", "tau", "V_rest"):
    _MEANING[f"{_q}_R2_identity"] = ("1", f"identity R2 of {_QUANTITY[_q]} on the seed's inliers")
    _MEANING[f"{_q}_outlier_share"] = ("1", f"share of outliers of {_QUANTITY[_q]} (seed's threshold)")
    _MEANING[f"{_q}_R2_field"] = ("1", f"identity R2 of {_QUANTITY[_q]} on the field's inliers")
    _MEANING[f"{_q}_R2_field_all"] = ("1", f"identity R2 of {_QUANTITY[_q]} on every entry (field's [all])")
    _MEANING[f"{_q}_field_dropped"] = ("1", f"share dropped by the field's threshold for {_QUANTITY[_q]}")


def _metric(name: str, section: str) -> Metric:
    base = name.removesuffix(READOUT_SUFFIX["corrected"])
    units, meaning = _MEANING[base]
    readout = readout_of(name) if section in ("tau", "V_rest") else ""
    if readout:
        meaning += f"; {readout} readout"
    definition = definition_of(name) or ("affine" if base.endswith(("_R2", "_R2_inliers", "_R2_type_median",
                                                                   "_R2_raw")) else "")
    return Metric(name, section, definition, readout, units, meaning)


METRICS: dict[str, Metric] = {name: _metric(name, section)
                              for section, names in EVALUATION_SECTIONS.items() for name in names}
