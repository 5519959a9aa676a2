"""Paired comparison of two configs on shared (ground_truth, sim_seed, train_seed) cells: the same
simulated network and seeds under both.

For the paired differences d_k = treatment_k - baseline_k (k = 1..n):

- mean difference d_bar, and d_z = d_bar / sd(d) (effect size);
- 95 % t interval d_bar +- t_{0.975, n-1} sd(d) / sqrt(n) (``t_low``, ``t_high``);
- 95 % percentile-bootstrap interval of the mean (``ci95_low``, ``ci95_high``; with 4 pairs it
  lies above 0 exactly when all 4 differences are positive);
- exact sign-flip p (``sign_flip_p``): the share of the 2^n sign patterns of the d_k whose mean
  is at least as far from 0 as d_bar (two-sided; its smallest value is 2 / 2^n, 0.125 at n = 4);
- paired t p and Wilcoxon signed-rank p.

A claim that a method raises a metric needs ``CLAIM_MIN_PAIRS`` pairs and the t interval above 0
(``PairedComparison.raised``).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats as st

from flyvis_study.study.results import runs_table

COMPARED_METRICS = ("V_rest_R2", "connectivity_R2", "tau_R2")
CLAIM_MIN_PAIRS = 8  # pairs a "raised" claim needs (exact sign-flip p can then reach 2 / 256)
EXACT_SIGN_FLIPS_UP_TO = 20  # pairs up to which the sign-flip p enumerates every pattern (2^20)


@dataclass(frozen=True)
class PairedComparison:
    """treatment - baseline of one metric on shared seed pairs (module docstring). ``kind``,
    ``arm``, ``levels``, ``control`` and ``block`` say where a comparison sits in a block's
    factorial (``study.levers``) or the study (``report.summary``)."""

    metric: str
    baseline_config: str
    treatment_config: str
    pairs: list[tuple[int, int]] = field(default_factory=list)  # (sim_seed, train_seed) of each pair
    ground_truths: list[str] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    treatment: list[float] = field(default_factory=list)
    ci95_low: float = math.nan
    ci95_high: float = math.nan
    t_low: float = math.nan
    t_high: float = math.nan
    sign_flip_p: float = math.nan
    ttest_p: float = math.nan
    wilcoxon_p: float = math.nan
    effect_size_dz: float = math.nan
    kind: str = ""
    arm: str = ""
    levels: dict = field(default_factory=dict)
    control: str = ""
    definition: str = ""
    block: int | None = None

    @property
    def n_pairs(self) -> int:
        return len(self.pairs)

    @property
    def differences(self) -> np.ndarray:
        return np.asarray(self.treatment, dtype=float) - np.asarray(self.baseline, dtype=float)

    @property
    def mean_difference(self) -> float:
        return float(self.differences.mean()) if self.n_pairs else math.nan

    @property
    def mean_baseline(self) -> float:
        return float(np.mean(self.baseline)) if self.n_pairs else math.nan

    @property
    def mean_treatment(self) -> float:
        return float(np.mean(self.treatment)) if self.n_pairs else math.nan

    @property
    def n_positive(self) -> int:
        return int((self.differences > 0).sum())

    @property
    def raised(self) -> bool:
        """The claim rule: at least ``CLAIM_MIN_PAIRS`` pairs and the t interval above 0."""
        return self.n_pairs >= CLAIM_MIN_PAIRS and self.t_low > 0

    def kept(self, margin: float) -> bool:
        """The t interval's lower end above ``margin`` (e.g. -0.02: conn_R2 not lowered by more)."""
        return self.n_pairs >= 2 and self.t_low > margin

    def interval(self) -> str:
        """``+0.012 [t: -0.004, +0.028]``: mean difference and its t interval."""
        return f"{self.mean_difference:+.3f} [{self.t_low:+.3f}, {self.t_high:+.3f}]"

    def describe(self) -> str:
        """One sentence with the numbers, the intervals and p values, and the caveat of small n."""
        if self.n_pairs == 0:
            return f"{self.metric}: no shared seed pairs."
        return (f"{self.metric}: {self.treatment_config} {self.mean_treatment:.3f} vs {self.baseline_config} "
                f"{self.mean_baseline:.3f} on {self.n_pairs} seed pairs; mean difference "
                f"{self.mean_difference:+.3f} (95 % t interval [{self.t_low:+.3f}, {self.t_high:+.3f}], "
                f"bootstrap [{self.ci95_low:+.3f}, {self.ci95_high:+.3f}]), d_z {self.effect_size_dz:+.2f}, "
                f"sign-flip p = {self.sign_flip_p:.3g}, paired t p = {self.ttest_p:.3g}, "
                f"Wilcoxon p = {self.wilcoxon_p:.3g}; {self.n_positive}/{self.n_pairs} pairs higher under "
                f"{self.treatment_config}" + (f" (a claim needs >= {CLAIM_MIN_PAIRS} pairs)."
                                              if self.n_pairs < CLAIM_MIN_PAIRS else "."))

    def row(self) -> dict:
        """The comparison as one table row (levels spread into columns)."""
        return {"block": self.block, "kind": self.kind, "arm": self.arm, **self.levels, "control": self.control,
                "metric": self.metric, "definition": self.definition, "baseline_config": self.baseline_config,
                "treatment_config": self.treatment_config, "n_pairs": self.n_pairs,
                "mean_baseline": self.mean_baseline, "mean_treatment": self.mean_treatment,
                "mean_difference": self.mean_difference, "t_low": self.t_low, "t_high": self.t_high,
                "ci95_low": self.ci95_low, "ci95_high": self.ci95_high, "sign_flip_p": self.sign_flip_p,
                "ttest_p": self.ttest_p, "wilcoxon_p": self.wilcoxon_p, "effect_size_dz": self.effect_size_dz,
                "n_positive": self.n_positive}

    def within(self, **context) -> PairedComparison:
        """The same comparison placed in a factorial or study (``kind``, ``arm``, ``levels``, ...)."""
        return replace(self, **context)


def t_interval(x: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The t interval of the mean of x (NaN with fewer than two values)."""
    x = np.asarray(x, dtype=float)
    if x.size < 2:
        return math.nan, math.nan
    half = st.t.ppf(0.5 + confidence / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return float(x.mean() - half), float(x.mean() + half)


def sign_flip_p(d: np.ndarray, n_resamples: int = 99_999, seed: int = 0) -> float:
    """Two-sided sign-flip p of mean(d) = 0: exact over all 2^n patterns for n <=
    ``EXACT_SIGN_FLIPS_UP_TO``, else Monte Carlo with ``n_resamples`` patterns (+1 smoothing)."""
    d = np.asarray(d, dtype=float)
    if d.size == 0:
        return math.nan
    observed = abs(d.mean()) * (1 - 1e-12)  # ties count as "as extreme"
    if d.size <= EXACT_SIGN_FLIPS_UP_TO:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=d.size)))
        return float(np.mean(np.abs(signs @ d) / d.size >= observed))
    signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(n_resamples, d.size))
    return float((1 + np.sum(np.abs(signs @ d) / d.size >= observed)) / (n_resamples + 1))


def paired_comparison(baseline: xr.Dataset, treatment: xr.Dataset, metric: str,
                      baseline_config: str | None = None, treatment_config: str | None = None,
                      n_resamples: int = 9999, seed: int = 0) -> PairedComparison:
    """treatment - baseline on shared (ground_truth, sim_seed, train_seed) cells of one config each
    (default: each block's first config)."""
    def per_pair(ds, config):
        df = runs_table(ds)
        config = config if config is not None else df["config"].iloc[0]
        df = df[df["config"] == config]
        return df.set_index(["ground_truth", "sim_seed", "train_seed"])[metric], config

    a, a_cfg = per_pair(baseline, baseline_config)
    b, b_cfg = per_pair(treatment, treatment_config)
    joined = pd.concat({"baseline": a, "treatment": b}, axis=1, join="inner").dropna()
    return compare_pairs(metric, a_cfg, b_cfg, [(int(s), int(t)) for _, s, t in joined.index],
                         joined["baseline"].tolist(), joined["treatment"].tolist(),
                         ground_truths=[str(g) for g, _, _ in joined.index], n_resamples=n_resamples, seed=seed)


def compare_pairs(metric: str, baseline_config: str, treatment_config: str, pairs: list[tuple[int, int]],
                  baseline: list[float], treatment: list[float], ground_truths: list[str] | None = None,
                  n_resamples: int = 9999, seed: int = 0, **where) -> PairedComparison:
    """The paired statistics (module docstring) of ``treatment[k] - baseline[k]`` on seed pairs
    ``pairs[k]``; ``where``: the comparison's place (``kind``, ``arm``, ...)."""
    baseline, treatment = np.asarray(baseline, dtype=float), np.asarray(treatment, dtype=float)
    diff = treatment - baseline
    stats: dict = {}
    if diff.size >= 2:
        sd = float(diff.std(ddof=1))
        stats["effect_size_dz"] = float(diff.mean()) / sd if sd > 0 else math.nan
        stats["t_low"], stats["t_high"] = t_interval(diff)
        if sd > 0:
            ci = st.bootstrap((diff,), np.mean, n_resamples=n_resamples, confidence_level=0.95,
                              method="percentile", rng=np.random.default_rng(seed))
            stats["ci95_low"], stats["ci95_high"] = float(ci.confidence_interval.low), float(
                ci.confidence_interval.high)
            stats["ttest_p"] = float(st.ttest_rel(treatment, baseline).pvalue)
        if np.any(diff != 0):
            stats["wilcoxon_p"] = float(st.wilcoxon(diff).pvalue)
    if diff.size:
        stats["sign_flip_p"] = sign_flip_p(diff)
    return PairedComparison(metric, baseline_config, treatment_config, pairs=list(pairs),
                            ground_truths=list(ground_truths or []), baseline=baseline.tolist(),
                            treatment=treatment.tolist(), **stats, **where)


def describe_comparison(c: PairedComparison) -> str:
    """One sentence per comparison (``PairedComparison.describe``)."""
    return c.describe()


def compare_with_baseline(baseline: xr.Dataset, treatment: xr.Dataset, configs: list[str],
                          metrics=COMPARED_METRICS) -> list[PairedComparison]:
    """``paired_comparison`` of each treatment config with the baseline (its first config), per metric."""
    return [paired_comparison(baseline, treatment, metric, treatment_config=cfg) for cfg in configs
            for metric in metrics]
