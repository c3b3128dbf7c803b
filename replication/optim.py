"""Optimisers and schedules of the training loop, all torch's own, chosen by ``train.*``.

- ``adam`` (the suite's default; FFJORD, RNODE, RealNVP), ``adamax`` (Glow) and ``rmsprop``
  (NICE, with momentum).
- Learning rate, as a factor of ``train.lr`` for a ``torch.optim.lr_scheduler.LambdaLR``:
  a linear warm-up over ``warmup_iterations``, times either 1 (``none``), a cosine decay to
  zero (``cosine``) or NICE's exponential decay with a floor (``exponential``),

      lr_k = max(lr_floor, lr * lr_decay_factor ** -k)      after k updates

  (Dinh et al. 2014: lr 1e-3 divided by 1.0005 after each update, never below 1e-4).
- Momentum ramp (NICE: momentum 0 at first, 0.5 after the fifth epoch): the momentum of
  RMSProp rises linearly from 0 to ``train.momentum`` between the iterations
  ``momentum_ramp = [start, end]``. Torch has no momentum scheduler for RMSProp, so
  :func:`ramp_momentum` sets it in the optimiser's parameter groups before every update; being
  a function of the iteration only, it resumes from a checkpoint without state of its own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from replication.config import TrainConfig

FUSED_ADAM_DEVICES = ("cpu", "cuda")  # devices with a fused Adam kernel in torch >= 2.4


def make_optimizer(
    parameters: Iterable[torch.nn.Parameter], train: TrainConfig, device: torch.device
) -> torch.optim.Optimizer:
    """The configured optimiser with the config's learning rate and weight decay."""
    common = {"lr": train.lr, "weight_decay": train.weight_decay}
    if train.optimizer == "rmsprop":
        return torch.optim.RMSprop(parameters, momentum=momentum_at(train, 0), **common)
    if train.optimizer == "adamax":
        return torch.optim.Adamax(parameters, **common)
    # One fused kernel for all parameters instead of a Python loop over them: the 2D flows
    # have ~100 small tensors, and the loop cost a third of each step (RealNVP toy: 18.6 ->
    # 10.7 ms per iteration on one CPU thread). Same update rule, deterministic.
    return torch.optim.Adam(parameters, fused=device.type in FUSED_ADAM_DEVICES, **common)


def learning_rate_factor(train: TrainConfig, iteration: int) -> float:
    """The learning rate of update ``iteration`` (0-based) as a factor of ``train.lr``."""
    factor = min(1.0, (iteration + 1) / train.warmup_iterations) if train.warmup_iterations else 1.0
    if train.lr_decay == "cosine":
        factor *= 0.5 * (1 + math.cos(math.pi * iteration / train.iterations))
    elif train.lr_decay == "exponential":
        decayed = math.exp(-iteration * math.log(train.lr_decay_factor))
        factor *= max(train.lr_floor / train.lr, decayed)
    return factor


def momentum_at(train: TrainConfig, iteration: int) -> float:
    """RMSProp's momentum for update ``iteration``: 0 before the ramp, ``train.momentum`` after
    it, linear in between."""
    start, end = train.momentum_ramp
    if iteration >= end:
        return train.momentum
    if iteration <= start:
        return 0.0
    return train.momentum * (iteration - start) / (end - start)


def ramp_momentum(optimizer: torch.optim.Optimizer, train: TrainConfig, iteration: int) -> None:
    """Set RMSProp's momentum for update ``iteration``; nothing for the other optimisers."""
    if not isinstance(optimizer, torch.optim.RMSprop):
        return
    momentum = momentum_at(train, iteration)
    for group in optimizer.param_groups:
        group["momentum"] = momentum
        if momentum > 0:
            # Torch creates the velocity only for parameters first stepped with momentum > 0;
            # a ramp from 0 starts it here at zero, so the first step with momentum equals
            # one without.
            for parameter in group["params"]:
                state = optimizer.state[parameter]
                if state and "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(parameter)
