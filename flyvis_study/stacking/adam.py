"""One Adam step for the parameters of many optimisers at once (the replicas of a stack).

Each replica keeps its own ``torch.optim.Adam`` (``train.optimizer.build_optimizer``): its
parameter groups carry the replica's learning rates, its ``state`` the replica's moments and
step count, so its ``state_dict`` is a single run's and a checkpoint resumes alone or in a
stack alike. ``adam_step`` applies, to every parameter p of every group of every optimiser
(with that group's lr, betas, eps),

    t <- t + 1;  m <- beta1 m + (1 - beta1) g;  v <- beta2 v + (1 - beta2) g^2
    p <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

in one set of multi-tensor (``torch._foreach_*``) operations over all of them, in the order
of operations of PyTorch's foreach Adam (non-capturable: t on the host, bitwise the same
result as ``optimizer.step()``; capturable or fused: t on the device, as in a CUDA graph, the
same maths, with beta^t in the parameters' dtype). Supported: Adam without weight decay,
amsgrad or maximize (what ``build_optimizer`` makes).
"""

from __future__ import annotations

import torch


def _state(opt: torch.optim.Adam, group: dict, p: torch.Tensor, on_device: bool) -> dict:
    state = opt.state[p]
    if not state:  # as torch.optim.Adam's lazy initialisation
        scalar = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
        state["step"] = (torch.zeros((), dtype=torch.float32 if group.get("fused") else scalar, device=p.device)
                         if on_device else torch.tensor(0.0, dtype=scalar))
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    return state


@torch.no_grad()
def adam_step(optimizers: list[torch.optim.Adam]) -> None:
    """One Adam step of every optimiser (module docstring); parameters without a gradient are skipped."""
    params, grads, m, v, steps, lrs, consts = [], [], [], [], [], [], set()
    capturable = False
    for opt in optimizers:
        for group in opt.param_groups:
            if group["weight_decay"] or group["amsgrad"] or group["maximize"]:
                raise ValueError("adam_step: weight decay, amsgrad and maximize are not supported")
            on_device = bool(group["capturable"] or group["fused"])
            capturable |= on_device
            consts.add((group["betas"], group["eps"]))
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = _state(opt, group, p, on_device)
                params.append(p)
                grads.append(p.grad)
                m.append(state["exp_avg"])
                v.append(state["exp_avg_sq"])
                steps.append(state["step"])
                lrs.append(float(group["lr"]))
    if not params:
        return
    if len(consts) != 1:
        raise ValueError("adam_step: every group must have the same betas and eps")
    (beta1, beta2), eps = consts.pop()
    if steps[0].is_cpu:
        torch._foreach_add_(steps, torch.tensor(1.0, device="cpu"), alpha=1.0)
    else:
        torch._foreach_add_(steps, 1)
    torch._foreach_lerp_(m, grads, 1 - beta1)
    torch._foreach_mul_(v, beta2)
    torch._foreach_addcmul_(v, grads, grads, 1 - beta2)
    if capturable:
        # t in the parameters' dtype: a fused group's t is float32 even for float64 parameters,
        # and torch's fused Adam takes beta^t in float64 (a float32 beta^t differs by ~1e-7)
        steps = [t if t.dtype == p.dtype else t.to(p.dtype) for t, p in zip(steps, params)]
        bc1 = torch._foreach_pow(beta1, steps)
        bc2 = torch._foreach_pow(beta2, steps)
        torch._foreach_sub_(bc1, 1)  # beta1^t - 1 = -(1 - beta1^t)
        torch._foreach_sub_(bc2, 1)
        torch._foreach_neg_(bc2)
        torch._foreach_mul_(bc1, [1.0 / lr for lr in lrs])  # -(1 - beta1^t) / lr = 1 / step_size
        torch._foreach_sqrt_(bc2)
        denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, bc2)
        torch._foreach_add_(denom, eps)
        torch._foreach_mul_(denom, bc1)
        torch._foreach_addcdiv_(params, m, denom)
        return
    step_size = []
    bc2_sqrt = []
    for t, lr in zip(steps, lrs):
        t = t.item()
        step_size.append(-lr / (1 - beta1 ** t))
        bc2_sqrt.append((1 - beta2 ** t) ** 0.5)
    denom = torch._foreach_sqrt(v)
    torch._foreach_div_(denom, bc2_sqrt)
    torch._foreach_add_(denom, eps)
    torch._foreach_addcdiv_(params, m, denom, step_size)
