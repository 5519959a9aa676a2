"""Synthetic flyvis-like ground truth (the default; works offline).

Draw (dedicated seed, independent of simulation.seed), in reference order:
- V_rest per type ~ N(0.51, 0.16) clipped to [0, 0.8];
- tau: 51 of 65 types uniform in [0.0194, 0.0200] (just below dt), the other 14
  log-uniform in [0.037, 0.32];
- strength per edge type lognormal with median 0.018 and mean 0.038 (sigma 1.22),
  capped at 0.36, ~5 % exactly zero; signs and n_syn from the connectome file.

Two calibrations make the dynamics bounded and non-trivial on the connectome used:
1. **stability**: all strengths are multiplied by target_abscissa / abscissa(W) so the
   spectral abscissa of the N x N weight matrix is 0.85 (flyvis model 0000/000's value;
   independent lognormal draws give 2-4 and the ODE explodes);
2. **activity and bounds**: a short noise-free probe simulation (400 frames of natural
   clips) measures, per cell type, the largest temporal voltage std over its neurons, and
   the largest |v|. Types whose |v| exceeds ``voltage_bound`` (strong non-normal
   amplification) get the strengths of their input edge types halved; else, for types that do not vary (std <
   ``activity_threshold``: all their inputs are too weak) the strengths of the edge types
   into them are doubled (zero strengths first set to the median strength). Step 1 is
   repeated, up to ``max_rounds`` times; the best round is kept.
The result records the raw abscissa, the final target, the rounds, the boosted types and
any type still silent (``info``).
"""

from __future__ import annotations

import numpy as np
import torch

from .ground_truth import TARGET_ABSCISSA, REFERENCE_EXTENT, GroundTruthParams, instantiate, spectral_abscissa
from .lattice import Connectome, cached_connectome

SYNTHETIC_VERSION = 3  # bump when the draw or the calibration changes


def draw_parameters(seed: int) -> GroundTruthParams:
    """The raw draw (before calibration), in reference order."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x9E3779B9]))
    ref = cached_connectome(REFERENCE_EXTENT)
    n_types, n_etypes = len(ref.cell_types), ref.edge_types.shape[0]
    V_rest = np.clip(rng.normal(0.51, 0.16, n_types), 0.0, 0.8)
    tau = rng.uniform(0.0194, 0.0200, n_types)
    slow = rng.choice(n_types, size=n_types - 51, replace=False)
    tau[slow] = np.exp(rng.uniform(np.log(0.037), np.log(0.32), slow.size))
    strength = np.minimum(np.exp(rng.normal(np.log(0.018), 1.22, n_etypes)), 0.36)
    strength[rng.random(n_etypes) < 0.05] = 0.0
    return GroundTruthParams(
        source=f"synthetic flyvis-like (seed {seed})",
        V_rest_type=V_rest.astype(np.float32), tau_type=tau.astype(np.float32),
        edge_type_keys=ref.edge_types.copy(), edge_type_sign=ref.edge_type_sign.copy(),
        edge_type_strength=strength.astype(np.float32), group_keys=ref.offset_groups.copy(),
        group_nsyn=ref.group_nsyn.copy(), info={"seed": seed},
    )


def _with_strength(params: GroundTruthParams, strength: np.ndarray, info: dict) -> GroundTruthParams:
    return GroundTruthParams(**{**params.__dict__, "edge_type_strength": strength.astype(np.float32),
                                "info": info})


def probe_stimulus(connectome: Connectome, n_frames: int = 400) -> np.ndarray:
    """(n_frames, C) natural-clip hexals for the activity probe (fixed, seed-independent)."""
    from .stimuli import build_clip_library, build_streams

    lib = build_clip_library(connectome.columns, n_base_clips=4, seed=12345)
    return build_streams(lib, n_frames, simulation_seed=0).train


def probe_activity(params: GroundTruthParams, connectome: Connectome,
                   hexals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free probe driven by ``hexals``: per type (65,), the max temporal voltage std
    over its neurons and the max |v|."""
    from .simulator import Simulator

    gt = instantiate(params, connectome)
    sim = Simulator(connectome, gt, noise_level=0.0)
    v = np.concatenate([v for _, v, _ in sim.run(hexals, sim.initial_state(), torch.Generator())])
    n_types = len(connectome.cell_types)
    type_std = np.full(n_types, -np.inf)
    type_max = np.full(n_types, -np.inf)
    finite = np.isfinite(v).all(0)
    np.maximum.at(type_std, connectome.node_type, np.where(finite, v.std(0), np.inf))
    np.maximum.at(type_max, connectome.node_type, np.where(finite, np.abs(v).max(0), np.inf))
    return type_std, type_max


def synthetic_ground_truth(connectome: Connectome, seed: int = 0, target_abscissa: float = TARGET_ABSCISSA,
                           activity_threshold: float = 3e-4, voltage_bound: float = 20.0,
                           max_rounds: int = 8) -> GroundTruthParams:
    """Draw and calibrate synthetic parameters for ``connectome`` (see module docstring)."""
    params = draw_parameters(seed)
    strength = params.edge_type_strength.astype(np.float64)
    hexals = probe_stimulus(connectome)
    raw = None
    boosted: set[str] = set()
    damped: set[str] = set()
    best = None
    for rounds in range(max_rounds + 1):
        trial = _with_strength(params, strength, params.info)
        abscissa = spectral_abscissa(instantiate(trial, connectome).weight_matrix(connectome))
        raw = abscissa if raw is None else raw
        strength = strength * (target_abscissa / abscissa if abscissa > 0 else 1.0)
        type_std, type_max = probe_activity(_with_strength(params, strength, params.info), connectome, hexals)
        silent = np.flatnonzero(type_std < activity_threshold)
        vmax = float(type_max.max())
        score = (vmax > voltage_bound, silent.size)
        if best is None or score < best[0]:
            best = (score, strength.copy(), silent, vmax, rounds)
        if score == (False, 0):
            break
        if vmax > voltage_bound:  # too much amplification: halve the inputs of the runaway types
            runaway = np.isin(params.edge_type_keys[:, 1], np.flatnonzero(type_max > voltage_bound))
            strength[runaway] *= 0.5
            damped.update(connectome.cell_types[k] for k in np.flatnonzero(type_max > voltage_bound))
            continue
        into_silent = np.isin(params.edge_type_keys[:, 1], silent)
        typical = np.median(strength[strength > 0])
        strength[into_silent & (strength == 0)] = typical  # a type whose inputs are all zero
        strength[into_silent] *= 2.0
        boosted.update(connectome.cell_types[k] for k in silent)
    _, strength, silent, vmax, rounds = best
    drawn = params.edge_type_strength > 0
    info = {"seed": seed, "raw_abscissa": raw, "target_abscissa": target_abscissa,
            "strength_scale_median": float(np.median(strength[drawn] / params.edge_type_strength[drawn])),
            "calibration_rounds": rounds, "boosted_types": sorted(boosted), "damped_types": sorted(damped),
            "silent_types": [connectome.cell_types[k] for k in silent], "probe_max_abs_v": vmax,
            "activity_threshold": activity_threshold, "voltage_bound": voltage_bound,
            "extent": connectome.extent}
    return _with_strength(params, strength, info)
