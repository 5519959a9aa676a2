"""Per-run and per-block figures (matplotlib; stable cell-type colours)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

PHASE_COLOURS = {"joint": "#dfe9f5", "V_rest": "#fbe5d6"}


def type_colours(n_types: int = 65) -> np.ndarray:
    """Stable RGBA colour per cell type (index k always gets the same colour)."""
    cmap = plt.get_cmap("gist_ncar")
    order = (np.arange(n_types) * 29) % n_types  # spread neighbours apart
    return cmap(order / n_types * 0.92)


def embedding_plot(ax, embedding: np.ndarray, node_type: np.ndarray, cell_types) -> None:
    """Learned embedding a (N, 2) coloured by true cell type, type names at the centroids."""
    colours = type_colours(len(cell_types))
    ax.scatter(embedding[:, 0], embedding[:, 1], c=colours[node_type], s=3, alpha=0.6, linewidths=0)
    for k, name in enumerate(cell_types):
        pts = embedding[node_type == k]
        if len(pts):
            c = np.median(pts, axis=0)
            ax.text(c[0], c[1], name, fontsize=5, color=colours[k] * [0.7, 0.7, 0.7, 1])
    ax.set(xlabel="a_0", ylabel="a_1", title="embedding by cell type")


def scatter_true_learned(ax, true: np.ndarray, learned: np.ndarray, title: str, text: str,
                         alpha: float = 0.3, s: float = 2) -> None:
    ax.scatter(true, learned, s=s, alpha=alpha, linewidths=0, color="k")
    lo, hi = np.nanmin(true), np.nanmax(true)
    ax.plot([lo, hi], [lo, hi], color="tab:red", lw=0.8)
    ax.set(xlabel="true", ylabel="learned", title=title)
    ax.text(0.03, 0.97, text, transform=ax.transAxes, va="top", fontsize=8)


def shade_phases(ax, n_iter: int, joint_iters: int, n_epochs: int) -> None:
    """Shade joint / V_rest phases on an axis whose x is the global iteration."""
    for e in range(n_epochs):
        base = e * n_iter
        ax.axvspan(base, base + joint_iters, color=PHASE_COLOURS["joint"], lw=0)
        if joint_iters < n_iter:
            ax.axvspan(base + joint_iters, base + n_iter, color=PHASE_COLOURS["V_rest"], lw=0)
        if e:
            ax.axvline(base, color="grey", lw=0.5, ls=":")


def trajectory_plot(ax, rows: list[dict], n_iter: int, joint_iters: int, n_epochs: int,
                    label_prefix: str = "") -> None:
    """conn / V_rest / tau R2 vs global iteration, joint and V_rest phases shaded."""
    shade_phases(ax, n_iter, joint_iters, n_epochs)
    x = [r["epoch"] * n_iter + r["iteration"] for r in rows]
    for key, colour, name in (("connectivity_r2", "tab:blue", "conn"), ("vrest_r2", "tab:orange", "V_rest"),
                              ("tau_r2", "tab:green", "tau")):
        ax.plot(x, [r[key] for r in rows], marker="o", ms=2.5, color=colour, label=label_prefix + name)
    ax.set(xlabel="iteration", ylabel="R2", ylim=(-0.05, 1.02), title="R2 trajectory (blue: joint, orange: V_rest)")
    ax.legend(fontsize=7, loc="lower right")


def loss_plot(ax, loss: np.ndarray, n_iter: int, joint_iters: int, n_epochs: int) -> None:
    shade_phases(ax, n_iter, joint_iters, n_epochs)
    if loss.size:
        k = max(1, loss.size // 400)
        smooth = loss[: loss.size // k * k].reshape(-1, k).mean(1)
        ax.plot(np.arange(smooth.size) * k, smooth, lw=0.8, color="k")
        ax.set_yscale("log")
    ax.set(xlabel="iteration", ylabel="loss", title="training loss")


def function_curves(axes, model, stats, node_type, gt, cell_types, n_types_shown: int = 65) -> None:
    """g_phi(v)^2 per type vs ReLU and f_theta(v, M=0, I=0) per type vs the true leak line."""
    colours = type_colours(len(cell_types))
    dev = model.W.device
    reps = [int(np.flatnonzero(node_type == k)[0]) for k in range(min(n_types_shown, len(cell_types)))
            if np.any(node_type == k)]
    v = torch.linspace(-2, 4, 200, device=dev)
    with torch.no_grad():
        for i in reps:
            a = model.embedding[i:i + 1]  # one neuron, 200 rows of v
            h = model.edge_activation(v[:, None], a)[:, 0].cpu().numpy()
            f = model.update(v[:, None], a, None, None)[:, 0].cpu().numpy()
            k = node_type[i]
            axes[0].plot(v.cpu(), h, color=colours[k], lw=0.6, alpha=0.7)
            axes[1].plot(v.cpu(), f, color=colours[k], lw=0.6, alpha=0.7)
            axes[1].plot(v.cpu(), (-v.cpu().numpy() + gt.V_rest[i]) / gt.tau[i], color=colours[k], lw=0.4, ls=":")
    axes[0].plot(v.cpu(), np.maximum(v.cpu().numpy(), 0), color="k", lw=1.2, ls="--", label="ReLU")
    axes[0].set(xlabel="v", ylabel="g_phi(v, a)^2", title="edge function per type")
    axes[0].legend(fontsize=7)
    axes[1].set(xlabel="v", ylabel="f_theta(v, a, 0, 0)", title="update function per type (dotted: true)",
                ylim=(-150, 150))


def run_figure(model, dataset, rec, metrics: dict, rows, loss, n_iter: int, joint_iters: int,
               n_epochs: int, stats) -> plt.Figure:
    """The per-run panel: embedding, W* vs W, tau, V_rest, functions, trajectory, loss."""
    con, gt = dataset.connectome, dataset.ground_truth
    fig, axes = plt.subplots(2, 4, figsize=(18, 8.5))
    ax = axes.ravel()
    embedding_plot(ax[0], model.embedding.detach().cpu().numpy(), con.node_type, con.cell_types)
    keep = np.abs(rec.W_corrected - gt.W) <= 5
    scatter_true_learned(ax[1], gt.W[keep], rec.W_corrected[keep], "corrected W* vs true W",
                         f"R2 {metrics['connectivity_R2']:.3f}, slope {metrics['connectivity_slope']:.2f}\n"
                         f"N {int(keep.sum()):,} of {gt.W.size:,}", alpha=0.05, s=1)
    scatter_true_learned(ax[2], gt.tau, rec.tau_hat, "tau", f"R2 {metrics['tau_R2']:.3f}")
    scatter_true_learned(ax[3], gt.V_rest, rec.V_rest_hat, "V_rest (all neurons, uncropped)",
                         f"R2 {metrics['V_rest_R2']:.3f}\ntype-median R2 {metrics['V_rest_R2_type_median']:.3f}")
    function_curves(ax[4:6], model, stats, con.node_type, gt, con.cell_types)
    trajectory_plot(ax[6], rows, n_iter, joint_iters, n_epochs)
    loss_plot(ax[7], loss, n_iter, joint_iters, n_epochs)
    # fixed margins for the fixed 2 x 4 grid: tight_layout would draw the figure once more to
    # measure its labels, a third of the figure's cost at the tiny preset, on every run
    fig.subplots_adjust(left=0.04, right=0.99, bottom=0.065, top=0.96, wspace=0.3, hspace=0.3)
    return fig


def save(fig: plt.Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
