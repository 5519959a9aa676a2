"""training.matmul_precision: the CUDA matmul precision of the step, set per step and restored;
no effect on CPU (bit for bit); part of a run's identity only away from its default."""

import pytest
import torch

from flyvis_study.config import load_run_config
from flyvis_study.study.spec import run_id_of
from flyvis_study.train.loop import build_model
from flyvis_study.train.optimizer import build_optimizer
from flyvis_study.train.precision import cuda_matmul_precision
from flyvis_study.train.schedule import coefficients
from flyvis_study.train.steps import EagerStep
from flyvis_study.world.training_data import TrainingData


def _with(cfg, precision):
    return cfg.model_copy(update={"training": cfg.training.model_copy(update={"matmul_precision": precision})})


def test_the_setting_holds_inside_and_is_restored_after_even_on_an_error():
    matmul = torch.backends.cuda.matmul
    before = matmul.fp32_precision
    with cuda_matmul_precision("tf32"):
        assert matmul.fp32_precision == "tf32"
    assert matmul.fp32_precision == before
    with pytest.raises(RuntimeError, match="inside"), cuda_matmul_precision("tf32"):
        raise RuntimeError("inside")
    assert matmul.fp32_precision == before
    with pytest.raises(ValueError, match="training.matmul_precision: 'fp16'; allowed: ieee, tf32"):
        with cuda_matmul_precision("fp16"):
            pass


def test_a_bad_value_is_one_line_naming_the_key():
    with pytest.raises(ValueError, match="training.matmul_precision") as err:
        load_run_config("gold_standard.yaml", preset="tiny", overrides={"training.matmul_precision": "fp16"})
    assert "'ieee' or 'tf32'" in str(err.value)


def test_cpu_steps_are_the_same_bits_at_either_precision(tiny_config, tiny_dataset):
    """CPU matrix products do not read the CUDA setting: 6 steps from the same start give the
    same losses and parameters, bit for bit, so the key is a no-op on a CPU."""
    data = TrainingData(tiny_dataset, torch.device("cpu"))
    idx = data.frames[torch.randint(0, data.frames.shape[0], (6, 2), generator=torch.Generator().manual_seed(0))]
    results = []
    for precision in ("ieee", "tf32"):
        cfg = _with(tiny_config, precision)
        torch.manual_seed(0)
        model = build_model(cfg, tiny_dataset, torch.device("cpu"))
        step = EagerStep(model, build_optimizer(model, cfg, torch.device("cpu")), data, cfg, data.stats.xnorm)
        step.configure(coefficients(cfg.training, 1), "joint")
        losses = torch.stack([step(i) for i in idx])
        results.append((losses, [p.detach().clone() for p in model.parameters()]))
    (l1, p1), (l2, p2) = results
    assert torch.equal(l1, l2)
    assert all(torch.equal(a, b) for a, b in zip(p1, p2))


def test_the_run_id_moves_only_away_from_the_default(tiny_config):
    assert run_id_of(_with(tiny_config, "ieee")) == run_id_of(tiny_config)
    assert run_id_of(_with(tiny_config, "tf32")) != run_id_of(tiny_config)
