"""Phase schedule (standard / two-stage) and per-epoch regulariser coefficients.

Phases within each epoch of Niter iterations:
- standard training: one ``joint`` phase for all iterations;
- two-stage training: ``joint`` for [0, joint_iters), ``V_rest`` for [joint_iters, Niter),
  joint_iters = int(Niter * alternate_joint_ratio). The schedule restarts every epoch.

Learning rates per phase:
    group      joint          V_rest
    W          lr_W           lr_W * alternate_lr_ratio
    g_phi      lr             lr * alternate_lr_ratio
    f_theta    lr_update|lr   lr_update|lr
    embedding  lr_embedding   lr_embedding
each times ``epoch_lr_ratio`` in epochs e >= 1 (the epoch-level LR drop; 1 by default).

Coefficients with epoch index e (0-based), reference-compatible:
    W L1       c * (1 - exp(-rate * e))
    f_theta L1 c * (1 - exp(-rate * e))
    g_phi L1   c * (1 - exp(-rate ** e))      (a power, as in the reference: 0.632, 0.393, ...)
    W L2       active only when the effective W L1 coefficient is 0
    others     constant (g_phi diff, g_phi norm, the silent-input anchor g_phi_silent)
With ``regulariser_schedule: constant`` every epoch takes epoch 0's coefficients (W L1 and
f_theta L1 off, W L2 on, g_phi L1 at c * (1 - 1/e)).
"""

from __future__ import annotations

import math

from flyvis_study.config import TrainingConfig


def phase_of(iteration: int, joint_iters: int) -> str:
    """Phase of an iteration index within its epoch."""
    return "joint" if iteration < joint_iters else "V_rest"


def learning_rates(t: TrainingConfig, phase: str, epoch: int = 0) -> dict[str, float]:
    """Learning rate of each optimiser group in a phase of an epoch (0-based)."""
    drop = t.epoch_lr_ratio if epoch >= 1 else 1.0
    ratio = (t.alternate_lr_ratio if phase == "V_rest" else 1.0) * drop
    return {"W": t.lr_W * ratio, "g_phi": t.lr * ratio,
            "f_theta": (t.lr_update if t.lr_update is not None else t.lr) * drop,
            "embedding": t.lr_embedding * drop}


def coefficients(t: TrainingConfig, epoch: int) -> dict[str, float]:
    """Effective regulariser coefficients of an epoch (logged per epoch)."""
    if t.regulariser_schedule == "constant":
        epoch = 0
    w_l1 = t.coeff_W_L1 * (1 - math.exp(-t.coeff_W_L1_rate * epoch))
    return {
        "W_L1": w_l1,
        "W_L2": t.coeff_W_L2 if w_l1 == 0 else 0.0,
        "g_phi_L1": t.coeff_g_phi_weight_L1 * (1 - math.exp(-(t.coeff_g_phi_weight_L1_rate ** epoch))),
        "g_phi_L2": t.coeff_g_phi_weight_L2,
        "f_theta_L1": t.coeff_f_theta_weight_L1 * (1 - math.exp(-t.coeff_f_theta_weight_L1_rate * epoch)),
        "f_theta_L2": t.coeff_f_theta_weight_L2,
        "g_phi_diff": t.coeff_g_phi_diff,
        "g_phi_norm": t.coeff_g_phi_norm,
        "g_phi_silent": t.coeff_g_phi_silent,
    }


def log_iterations(n_iter: int) -> list[int]:
    """Iterations (0-based index N, row written after its step) that get a metrics.log row.

    N > 0 and (N % (Niter // 10) == 0, or N < Niter // 10 and N % max(1, (Niter // 10) // 5) == 0),
    plus the last iteration of the epoch (Niter - 1).
    """
    tenth = max(1, n_iter // 10)
    fine = max(1, tenth // 5)
    rows = [n for n in range(1, n_iter) if n % tenth == 0 or (n < tenth and n % fine == 0)]
    if n_iter - 1 not in rows:
        rows.append(n_iter - 1)
    return rows
