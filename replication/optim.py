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

import inspect
import math
import sys
from collections.abc import Callable, Iterable

import torch

from replication.config import TrainConfig

FUSED_ADAM_DEVICES = ("cpu", "cuda")  # devices with a fused Adam kernel in torch >= 2.4


def _without_dynamo_import() -> None:
    """Let ``torch.optim.Optimizer``'s methods run without importing ``torch._dynamo``.

    Torch marks ``add_param_group``, ``state_dict``, ``load_state_dict`` and ``zero_grad`` as
    "not to be compiled" through a wrapper that imports torch._dynamo (about 1.5 s of every
    training job's start-up, whatever the optimiser's flags) on its first call, to wrap the
    method in ``torch._dynamo.disable``, and caches the result on the method as
    ``__dynamo_disable``. Outside ``torch.compile``, which this suite never uses, that disabled
    method is the method itself: caching the method itself skips the import and changes no
    number. Torch versions without this wrapper are left alone.
    """
    if "torch._dynamo" in sys.modules:  # already paid for: keep torch's own wrapping
        return
    for name in dir(torch.optim.Optimizer):
        wrapper = getattr(torch.optim.Optimizer, name, None)
        method = getattr(wrapper, "__wrapped__", None)
        code = getattr(wrapper, "__code__", None)
        if method is None or code is None or not code.co_filename.endswith("_compile.py"):
            continue
        if getattr(method, "__dynamo_disable", None) is None:
            method.__dynamo_disable = method


def _plain_step(cls: type[torch.optim.Optimizer]) -> type[torch.optim.Optimizer]:
    """``cls`` with its ``step`` run under ``torch.no_grad()`` alone: torch's own wrapper
    around it also imports torch._dynamo on every call (for graph breaks that matter only
    under ``torch.compile``) and does nothing else for a non-differentiable optimiser. The
    update itself is torch's, unchanged."""
    update = inspect.unwrap(cls.step)

    def step(
        self: torch.optim.Optimizer, closure: Callable[[], float] | None = None
    ) -> float | None:
        with torch.no_grad():
            return update(self, closure)

    return type(cls.__name__, (cls,), {"step": step, "__module__": __name__})


_ADAM, _ADAMAX, _RMSPROP = (
    _plain_step(cls) for cls in (torch.optim.Adam, torch.optim.Adamax, torch.optim.RMSprop)
)


def make_optimizer(
    parameters: Iterable[torch.nn.Parameter], train: TrainConfig, device: torch.device
) -> torch.optim.Optimizer:
    """The configured optimiser with the config's learning rate and weight decay."""
    _without_dynamo_import()
    common = {"lr": train.lr, "weight_decay": train.weight_decay}
    if train.optimizer == "rmsprop":
        return _RMSPROP(parameters, momentum=momentum_at(train, 0), **common)
    if train.optimizer == "adamax":
        return _ADAMAX(parameters, **common)
    # One fused kernel for all parameters instead of a Python loop over them: the 2D flows
    # have ~100 small tensors, and the loop cost a third of each step (RealNVP toy: 18.6 ->
    # 10.7 ms per iteration on one CPU thread). Same update rule, deterministic.
    return _ADAM(parameters, fused=device.type in FUSED_ADAM_DEVICES, **common)


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
