"""CUDA path: the graph-captured step equals the eager step (skipped without a GPU)."""

import numpy as np
import pytest
import torch

from flyvis_study.train.loop import build_model
from flyvis_study.train.optimizer import build_optimizer
from flyvis_study.train.schedule import coefficients
from flyvis_study.train.steps import CudaGraphStep, EagerStep
from flyvis_study.world.training_data import TrainingData

pytestmark = pytest.mark.gpu


def _run(step_cls, cfg, dataset, n=12):
    dev = torch.device("cuda")
    data = TrainingData(dataset, dev, derivative_target=cfg.training.derivative_target, dt=cfg.simulation.dt)
    model = build_model(cfg, dataset, dev)
    opt = build_optimizer(model, cfg, dev)
    step = step_cls(model, opt, data, cfg, data.stats.xnorm)
    draws = torch.randint(0, data.frames.shape[0], (n, 2), generator=torch.Generator().manual_seed(0))
    idx = data.frames[draws.to(dev)]
    t = cfg.training
    silent = t.g_phi_silent_low + (t.g_phi_silent_high - t.g_phi_silent_low) * torch.rand(
        (n, model.n_neurons), generator=torch.Generator().manual_seed(1))
    losses = []
    for k, phase in enumerate(["joint"] * (n // 2) + ["V_rest"] * (n - n // 2)):
        if k in (0, n // 2):
            step.configure(coefficients(cfg.training, 1), phase)
        losses.append(float(step(idx[k], silent[k].to(dev) if t.coeff_g_phi_silent > 0 else None)))
    return np.array(losses), model


@pytest.mark.parametrize("levers", [{}, {"coeff_g_phi_silent": 5.0, "derivative_target": "observed"}])
def test_graph_step_matches_eager(tiny_config, tiny_dataset, levers):
    """The captured step equals the eager one, with the V_rest levers (the anchor's voltages
    copied into the graph's static tensor, the observed target read from resident voltages)."""
    cfg = tiny_config.model_copy(update={"training": tiny_config.training.model_copy(update=levers)})
    eager, m1 = _run(EagerStep, cfg, tiny_dataset)
    graph, m2 = _run(CudaGraphStep, cfg, tiny_dataset)
    np.testing.assert_allclose(graph, eager, rtol=1e-4)
    for (k, a), b in zip(m1.state_dict().items(), m2.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=k)


def test_cuda_training_run(tiny_config, tiny_dataset, tmp_path):
    from flyvis_study.train.loop import train

    cfg = tiny_config.model_copy(update={"training": tiny_config.training.model_copy(
        update={"iterations_fraction": 0.02})})
    res = train(cfg, tiny_dataset, tmp_path, device="cuda", progress=False)
    assert not res.diverged and np.isfinite(res.loss).all()



@pytest.mark.parametrize("cuda_backward", ["chunked", "autograd"])
def test_cuda_loss_and_gradients_match_cpu(tiny_config, tiny_dataset, cuda_backward):
    """The training loss on CUDA (ChunkedMLP over all rows, or autograd through
    _SplitFirstLayer; norm_penalty's foreach backward) equals the CPU's (ChunkedMLP over
    cache-sized chunks), value and every gradient, in float64 (no float32 rounding noise)."""
    from flyvis_study.train.loss import training_loss
    from flyvis_study.train.schedule import coefficients

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    model = build_model(tiny_config, tiny_dataset, cpu).double()
    with torch.no_grad():
        model.embedding.normal_(generator=torch.Generator().manual_seed(0))
    data = TrainingData(tiny_dataset, cpu)
    rows = [t.double() for t in data.rows(np.array([3, 700]))]
    for epoch in (0, 1):
        c = coefficients(tiny_config.training, epoch)
        results = []
        for dev in (cpu, cuda):
            m = model.to(dev)
            m.use_mlp_backward("chunked" if dev == cpu else cuda_backward)
            loss = training_loss(m, *(t.to(dev) for t in rows), c, data.stats.xnorm)
            results.append((loss.cpu(), [g.cpu() for g in torch.autograd.grad(loss, list(m.parameters()))]))
        (l_cpu, g_cpu), (l_cuda, g_cuda) = results
        torch.testing.assert_close(l_cuda, l_cpu, rtol=1e-10, atol=1e-12)
        for (name, _), a, b in zip(model.named_parameters(), g_cuda, g_cpu):
            torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10, msg=name)


def test_stacked_training_on_cuda_equals_training_alone_float64(dataset_root, tmp_path):
    """Stacked replicas on CUDA (eager stacked step, float64) equal each run trained alone on CUDA:
    to 1e-9 through epoch 1, and to 1e-5 to the end. Epoch 2 switches the L1 terms on, which
    amplify rounding chaotically (on an H200: 1e-16 at the end of epoch 1, 1e-7 at the last step)."""
    from flyvis_study.config import load_run_config
    from flyvis_study.stacking.train import train_stack
    from flyvis_study.train.loop import train
    from flyvis_study.world.dataset import get_dataset

    params = __import__("conftest").REPO / "params"
    over = {"training.iterations_fraction": 0.005, "training.cuda_graph": False}
    cfgs = [load_run_config(params / "two_stage.yaml", preset="tiny", overrides={**over, "training.seed": s})
            for s in (0, 1)]
    ds = get_dataset(cfgs[0].simulation, root=dataset_root, progress=False)
    alone = [train(c, ds, tmp_path / f"a{k}", device="cuda", progress=False, dtype=torch.float64)
             for k, c in enumerate(cfgs)]
    stacked = train_stack(cfgs, [ds, ds], [tmp_path / "s0", tmp_path / "s1"], device="cuda", progress=False,
                          dtype=torch.float64)
    for a, s in zip(alone, stacked):
        assert len(s.loss) == len(a.loss) and len(a.loss) % 2 == 0
        first_epoch = len(a.loss) // 2
        np.testing.assert_allclose(s.loss[:first_epoch], a.loss[:first_epoch], rtol=1e-9)
        np.testing.assert_allclose(s.loss, a.loss, rtol=1e-5)


def test_stacked_graph_step_matches_stacked_eager(dataset_root, tmp_path):
    """The CUDA-graph capture of the stacked step gives the eager stacked step's losses (float32)
    over its first 8 steps, which include the recapture at the switch to the V_rest phase (step 4
    of 10 per epoch). Later steps are not compared: float32 atomics in the synaptic sum make each
    step's rounding differ, and Adam amplifies it (on an H200, 1e-3 apart after 20 steps)."""
    from flyvis_study.config import load_run_config
    from flyvis_study.stacking.train import train_stack
    from flyvis_study.world.dataset import get_dataset

    params = __import__("conftest").REPO / "params"
    results = {}
    for graph in (False, True):
        over = {"training.iterations_fraction": 0.0005, "training.cuda_graph": graph}
        cfgs = [load_run_config(params / "two_stage.yaml", preset="tiny", overrides={**over, "training.seed": s})
                for s in (0, 1, 2)]
        ds = get_dataset(cfgs[0].simulation, root=dataset_root, progress=False)
        results[graph] = train_stack(cfgs, [ds] * 3, [tmp_path / f"{graph}{k}" for k in range(3)], device="cuda",
                                     progress=False)
    for a, b in zip(results[False], results[True]):
        assert len(a.loss) == len(b.loss) == 20
        np.testing.assert_allclose(b.loss[:8], a.loss[:8], rtol=1e-4)
        assert not b.diverged and np.isfinite(b.loss).all()


@pytest.mark.parametrize("config", ["lr_drop.yaml", "two_stage_constant_schedule.yaml"])
def test_graph_training_follows_the_epoch_lr_drop_and_the_constant_schedule(config, dataset_root, tmp_path):
    """A 2-epoch run trained with the CUDA-graph step equals the same run trained eagerly on CUDA:
    the graph, recaptured at the epoch switch, takes epoch 2's learning rates (x 0.1 in lr_drop)
    and coefficients (held at epoch 1's in the constant schedule). A graph that kept epoch 1's
    learning rates would move every parameter ~0.9 x lr per step further than the eager run."""
    from flyvis_study.config import load_run_config
    from flyvis_study.train.loop import train
    from flyvis_study.world.dataset import get_dataset

    params = __import__("conftest").REPO / "params"
    results = {}
    for graph in (False, True):
        cfg = load_run_config(params / config, preset="tiny",
                              overrides={"training.iterations_fraction": 0.0003, "training.cuda_graph": graph})
        ds = get_dataset(cfg.simulation, root=dataset_root, progress=False)
        results[graph] = train(cfg, ds, tmp_path / str(graph), device="cuda", progress=False)
    eager, captured = results[False], results[True]
    assert len(eager.loss) == len(captured.loss) == 10 and eager.coefficients == captured.coefficients
    np.testing.assert_allclose(captured.loss, eager.loss, rtol=1e-4)
    for (k, a), b in zip(eager.model.state_dict().items(), captured.model.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=k)


def test_tf32_step_is_the_fp32_step_to_tensor_float_rounding(tiny_config, tiny_dataset):
    """``training.matmul_precision = tf32`` in the captured step: its first loss agrees with
    the FP32 step's to TF32 rounding, and the setting is restored after. Each GEMM operand loses
    13 mantissa bits (relative <= 2^-11 ~ 4.9e-4 each, ~1e-3 per product, FP32 sums), so the
    first loss, before any feedback through Adam, agrees to 1e-2 relative; 12 steps apart the
    runs drift (Adam amplifies rounding), so only the first loss is held to a bound."""
    tf32 = tiny_config.model_copy(update={"training": tiny_config.training.model_copy(
        update={"matmul_precision": "tf32"})})
    ieee, _ = _run(CudaGraphStep, tiny_config, tiny_dataset)
    fast, _ = _run(CudaGraphStep, tf32, tiny_dataset)
    np.testing.assert_allclose(fast[0], ieee[0], rtol=1e-2)
    assert np.isfinite(fast).all()
    assert torch.backends.cuda.matmul.fp32_precision != "tf32"  # restored after the steps
