"""The trainer: phase schedule, loss, learning, divergence, resume, run outputs."""

import csv
import json

import numpy as np
import pytest
import torch

from flyvis_study.config import load_run_config
from flyvis_study.model.naive import naive_edge_activation, naive_forward
from flyvis_study.train.loop import build_model, train
from flyvis_study.train.loss import regulariser, training_loss
from flyvis_study.train.schedule import coefficients, log_iterations
from flyvis_study.world.training_data import TrainingData

PARAMS = __import__("conftest").REPO / "params"


def cfg_for(name, **overrides):
    return load_run_config(PARAMS / name, preset="tiny", overrides=overrides)


@pytest.mark.parametrize("name,expect_switch", [("two_stage.yaml", True), ("gold_standard.yaml", False)])
def test_phase_switch_iteration_and_learning_rates(tiny_dataset, tmp_path, name, expect_switch):
    cfg = cfg_for(name, **{"training.iterations_fraction": 0.005, "training.n_epochs": 2,
                           "training.alternate_joint_ratio": 0.3})
    n_iter = cfg.n_iterations(tiny_dataset.n_train)
    seen = []

    def record(epoch, it, phase, opt):
        seen.append((epoch, it, phase, {g["name"]: g["lr"] for g in opt.param_groups}))

    train(cfg, tiny_dataset, tmp_path, progress=False, step_callback=record)
    assert len(seen) == 2 * n_iter
    joint = int(n_iter * 0.3) if expect_switch else n_iter
    t = cfg.training
    for _, it, phase, lrs in seen:
        if it < joint:
            assert phase == "joint"
            assert lrs == {"W": t.lr_W, "g_phi": t.lr, "f_theta": t.lr, "embedding": t.lr_embedding}
        else:
            assert phase == "V_rest"
            assert lrs["W"] == pytest.approx(t.lr_W * 0.1) and lrs["g_phi"] == pytest.approx(t.lr * 0.1)
            assert lrs["f_theta"] == t.lr and lrs["embedding"] == t.lr_embedding
    phases = [p for _, _, p, _ in seen]
    assert ("V_rest" in phases) == expect_switch
    if expect_switch:  # the schedule restarts at each epoch
        assert seen[n_iter][2] == "joint" and seen[n_iter + joint][2] == "V_rest"


def test_fused_loss_equals_data_loss_plus_regulariser(tiny_config, tiny_dataset):
    """The fast step's loss (split first layers, fused g_phi rows) equals the naive step's
    (per-edge rows, plain MLP calls, separate regulariser), value and every gradient."""
    data = TrainingData(tiny_dataset, torch.device("cpu"))
    model = build_model(tiny_config, tiny_dataset, torch.device("cpu")).double()
    with torch.no_grad():
        model.embedding.normal_(generator=torch.Generator().manual_seed(0))
    v, I, y = (t.double() for t in data.rows(np.array([3, 700])))
    plain_h = lambda v, a: naive_edge_activation(model, v, a)  # noqa: E731
    silent = -2 * torch.rand(model.n_neurons, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    anchored = tiny_config.training.model_copy(update={"coeff_g_phi_silent": 3.0})
    for c in (coefficients(tiny_config.training, 0), coefficients(tiny_config.training, 1), coefficients(anchored, 1)):
        fused = training_loss(model, v, I, y, c, data.stats.xnorm, silent)
        split = torch.linalg.vector_norm(model(v, I) - y) + regulariser(model, v[0], c, data.stats.xnorm,
                                                                         silent=silent)
        naive = torch.linalg.vector_norm(naive_forward(model, v, I) - y) + regulariser(
            model, v[0], c, data.stats.xnorm, edge_activation=plain_h, silent=silent)
        torch.testing.assert_close(fused, split)
        torch.testing.assert_close(fused, naive)
        names = [k for k, _ in model.named_parameters()]
        g1 = torch.autograd.grad(fused, list(model.parameters()))
        for other in (split, naive):
            g2 = torch.autograd.grad(other, list(model.parameters()))
            for k, a, b in zip(names, g1, g2):
                torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12, msg=k)


def test_regulariser_terms():
    from flyvis_study.model.gnn import FlyVisGNN

    m = FlyVisGNN(4, torch.tensor([0, 1]), torch.tensor([1, 2]))
    with torch.no_grad():
        m.W.copy_(torch.tensor([3.0, -4.0]))
    zero = {k: 0.0 for k in ("W_L1", "W_L2", "g_phi_L1", "g_phi_L2", "f_theta_L1", "f_theta_L2",
                             "g_phi_diff", "g_phi_norm")}
    v = torch.zeros(4)
    assert regulariser(m, v, {**zero, "W_L1": 2.0}, 1.0).item() == pytest.approx(14.0)
    assert regulariser(m, v, {**zero, "W_L2": 2.0}, 1.0).item() == pytest.approx(10.0)  # unsquared norm
    l1 = sum(p.abs().sum() for p in m.f_theta.parameters()).item()
    assert regulariser(m, v, {**zero, "f_theta_L1": 1.0}, 1.0).item() == pytest.approx(l1, rel=1e-5)
    silent = torch.tensor([-2.0, -1.0, -0.5, 0.0])
    h = m.edge_activation(silent, m.embedding).detach()
    anchor = regulariser(m, v, {**zero, "g_phi_silent": 2.0}, 1.0, silent=silent).item()
    assert anchor == pytest.approx(2.0 * torch.linalg.vector_norm(h).item(), rel=1e-6) and anchor > 0
    with pytest.raises(ValueError, match="silent: the anchor's voltages are required"):
        regulariser(m, v, {**zero, "g_phi_silent": 2.0}, 1.0)


@pytest.mark.slow
def test_silent_anchor_pulls_g_phi_to_zero_below_threshold(tiny_dataset, tmp_path):
    """Trained with the anchor, g_phi^2 over [-2, 0] is far smaller than trained without it
    (same seeds and batches); the anchor's draws resume bitwise from a checkpoint."""
    over = {"training.iterations_fraction": 0.01}
    plain = train(cfg_for("gold_standard.yaml", **over), tiny_dataset, tmp_path / "plain", progress=False)
    anchor_over = {**over, "training.coeff_g_phi_silent": 10.0, "training.n_epochs": 2}
    anchored = train(cfg_for("gold_standard.yaml", **anchor_over), tiny_dataset, tmp_path / "anchored",
                     progress=False)
    grid = torch.linspace(-2, 0, 21)[:, None].expand(21, plain.model.n_neurons)

    def silent_level(model):
        with torch.no_grad():
            return model.edge_activation(grid, model.embedding).mean().item()

    assert silent_level(anchored.model) < 0.2 * silent_level(plain.model)
    train(cfg_for("gold_standard.yaml", **{**anchor_over, "training.n_epochs": 1}), tiny_dataset,
          tmp_path / "cut", progress=False)
    resumed = train(cfg_for("gold_standard.yaml", **anchor_over), tiny_dataset, tmp_path / "cut", progress=False)
    np.testing.assert_array_equal(anchored.loss, resumed.loss)


@pytest.mark.slow
def test_loss_falls_and_connectivity_rises(tiny_dataset, tmp_path):
    cfg = cfg_for("gold_standard.yaml", **{"training.iterations_fraction": 0.1})
    res = train(cfg, tiny_dataset, tmp_path, progress=False)
    assert not res.diverged
    n = len(res.loss)
    assert res.loss[-n // 5:].mean() < 0.7 * res.loss[: n // 20].mean()
    conn = [r["connectivity_r2"] for r in res.log_rows]
    assert conn[0] < 0.05 and max(conn[-3:]) > conn[0] + 0.08, conn
    with open(tmp_path / "metrics.log") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["epoch", "iteration", "connectivity_r2", "vrest_r2", "tau_r2", "phase"]
    assert [int(r[1]) for r in rows[1:]] == log_iterations(cfg.n_iterations(tiny_dataset.n_train))
    coeffs = json.loads((tmp_path / "coefficients.json").read_text())
    assert coeffs[0]["epoch"] == 0 and coeffs[0]["W_L2"] == 3.5e-6


def test_observed_target_trains_on_the_noisy_difference(tiny_dataset, tmp_path):
    """Same seeds and batches: the observed target carries the noise sigma xi / dt, whose norm
    over a batch is about sigma / dt sqrt(B N) and adds in quadrature to the clean loss (at
    least half of that rise is required); the run still learns (loss falls)."""
    over = {"training.iterations_fraction": 0.01}
    cfg = cfg_for("gold_standard.yaml", **over)
    clean = train(cfg, tiny_dataset, tmp_path / "clean", progress=False)
    observed = train(cfg_for("gold_standard.yaml", **over, **{"training.derivative_target": "observed"}),
                     tiny_dataset, tmp_path / "observed", progress=False)
    noise = (cfg.simulation.noise_model_level / cfg.simulation.dt
             * np.sqrt(cfg.training.batch_size * tiny_dataset.connectome.n_neurons))
    rise = np.sqrt(clean.loss.mean() ** 2 + noise ** 2) - clean.loss.mean()
    assert not observed.diverged and observed.loss.mean() > clean.loss.mean() + 0.5 * rise
    n = len(observed.loss)
    assert observed.loss[-n // 5:].mean() < observed.loss[: n // 20].mean()


def test_divergence_is_recorded_as_failed(tiny_dataset, tmp_path):
    cfg = cfg_for("gold_standard.yaml", **{"training.iterations_fraction": 0.01, "training.lr": 1e6,
                                           "training.lr_W": 1e6, "training.lr_embedding": 1e6})
    res = train(cfg, tiny_dataset, tmp_path, progress=False)
    assert res.diverged and "non-finite" in res.reason


@pytest.mark.slow
def test_resume_from_checkpoint_gives_identical_result(tiny_dataset, tmp_path):
    over = {"training.iterations_fraction": 0.01}
    full = train(cfg_for("two_stage.yaml", **over), tiny_dataset, tmp_path / "full", progress=False)
    train(cfg_for("two_stage.yaml", **over, **{"training.n_epochs": 1}), tiny_dataset, tmp_path / "cut",
          progress=False)
    assert (tmp_path / "cut" / "checkpoints" / "epoch_0.pt").is_file()
    resumed = train(cfg_for("two_stage.yaml", **over), tiny_dataset, tmp_path / "cut", progress=False)
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    np.testing.assert_array_equal(full.loss, resumed.loss)
    assert full.log_rows == resumed.log_rows
    ckpt = torch.load(tmp_path / "full" / "checkpoints" / "epoch_1.pt", weights_only=False)
    assert {"model", "optimizer", "config", "epoch"} <= set(ckpt) and ckpt["config"]["training"]["n_epochs"] == 2


@pytest.mark.slow
def test_same_seeds_same_numbers(tiny_dataset, tmp_path):
    over = {"training.iterations_fraction": 0.005}
    a = train(cfg_for("two_stage.yaml", **over), tiny_dataset, tmp_path / "a", progress=False)
    b = train(cfg_for("two_stage.yaml", **over), tiny_dataset, tmp_path / "b", progress=False)
    c = train(cfg_for("two_stage.yaml", **over, **{"training.seed": 1}), tiny_dataset, tmp_path / "c",
              progress=False)
    np.testing.assert_array_equal(a.loss, b.loss)
    assert not np.array_equal(a.loss, c.loss)


@pytest.mark.parametrize("l1,l2", [(0.3, 0.0), (0.0, 0.7), (0.3, 0.7)])
def test_norm_penalty_equals_per_tensor_norms(l1, l2):
    """norm_penalty == sum of per-tensor vector_norm terms, value and gradient (including a
    zero tensor, whose L2 subgradient is 0 as vector_norm's backward gives, and zero entries);
    torch's gradcheck of the hand-written backward away from the kinks."""
    from flyvis_study.fast.penalties import norm_penalty

    g = torch.Generator().manual_seed(4)
    tensors = [torch.randn(5, 3, generator=g, dtype=torch.float64), torch.zeros(4, dtype=torch.float64),
               torch.tensor([0.0, -2.0, 1.5], dtype=torch.float64), torch.randn(1, generator=g, dtype=torch.float64)]
    tensors = [t.requires_grad_(True) for t in tensors]
    value = norm_penalty(tensors, l1, l2)
    plain = sum(l1 * torch.linalg.vector_norm(t, 1) + l2 * torch.linalg.vector_norm(t) for t in tensors)
    torch.testing.assert_close(value, plain)
    for a, b in zip(torch.autograd.grad(value, tensors), torch.autograd.grad(plain, tensors)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=0)
    smooth = [torch.randn(3, 2, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    assert torch.autograd.gradcheck(lambda *t: norm_penalty(list(t), l1, l2), smooth)


@pytest.mark.parametrize("l1,l2,tensors,message", [(0.0, 0.0, [torch.ones(2)], "not both 0"),
                                                   (-1.0, 0.0, [torch.ones(2)], "l1=-1.0"),
                                                   (1.0, 0.0, [], "at least one tensor")])
def test_norm_penalty_rejects_bad_arguments(l1, l2, tensors, message):
    from flyvis_study.fast.penalties import norm_penalty

    with pytest.raises(ValueError, match=message):
        norm_penalty(tensors, l1, l2)


class Killed(RuntimeError):
    pass


@pytest.mark.slow
def test_a_run_cut_or_killed_within_an_epoch_resumes_bitwise(tiny_dataset, tmp_path):
    """Cut by its stop time (anywhere: the cut point depends on this machine's speed) and then
    killed mid-epoch after a within-epoch checkpoint, a two-stage run resumes to the very loss
    history, parameters, metrics.log rows and coefficients of the run never cut (same process,
    same thread count, so the same order of every float operation: bitwise)."""
    from flyvis_study.train.loop import TrainingCut

    cfg = cfg_for("two_stage.yaml", **{"training.iterations_fraction": 0.01})
    n_iter = cfg.n_iterations(tiny_dataset.n_train)
    whole = train(cfg, tiny_dataset, tmp_path / "whole", progress=False)
    cut_dir = tmp_path / "cut"
    with pytest.raises(TrainingCut) as cut:
        train(cfg, tiny_dataset, cut_dir, progress=False, stop_at=0.0)  # cut after its first step
    assert (cut.value.epoch, cut.value.iteration) == (0, 0) and cut.value.steps_left == 2 * n_iter - 1
    assert (cut_dir / "checkpoints" / "partial.pt").is_file()

    def kill(epoch, it, phase, opt):  # killed in epoch 1 after two within-epoch checkpoints
        if epoch == 1 and it == n_iter // 2 + 3:
            raise Killed

    with pytest.raises(Killed):
        train(cfg, tiny_dataset, cut_dir, progress=False, step_callback=kill, checkpoint_every_s=0.0)
    saved = torch.load(cut_dir / "checkpoints" / "partial.pt", weights_only=False)
    assert (saved["epoch"], saved["iteration"]) == (1, n_iter // 2 + 2)
    assert not (cut_dir / "checkpoints" / "epoch_1.pt").exists()
    resumed = train(cfg, tiny_dataset, cut_dir, progress=False)
    assert not (cut_dir / "checkpoints" / "partial.pt").exists()  # removed at the epoch's end
    np.testing.assert_array_equal(whole.loss, resumed.loss)
    for (k, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    assert whole.log_rows == resumed.log_rows and whole.coefficients == resumed.coefficients
