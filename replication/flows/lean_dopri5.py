"""A lean Dormand-Prince 5(4) loop for training solves: torchdiffeq's dopri5, less its per-step
bookkeeping.

Why it exists: on FFJORD's toy model (batch 100, dopri5 at 1e-3) a training iteration through
torchdiffeq costs about 1.36 times what its evaluations of the field cost alone, forward and
backward (CNF's: 1.55); the rest is torchdiffeq's bookkeeping around each step (tensor
arithmetic on times and step sizes, the error estimate and the dense-output fit built into the
autograd graph and backpropagated through, the final interpolation). This loop takes the same
steps with the same evaluations for about 1.09 times the evaluations' cost (CNF: 1.16; README,
"Lean training solver", measured side by side).

It is the same method as torchdiffeq's ``dopri5`` with ``step_t`` at the end of the interval
(``land_on_end``): the Dormand-Prince tableau with first-same-as-last, the same controller (error
norm over ``atol + rtol max(|y0|, |y1|)``, accept at ratio <= 1, next step scaled by
``0.9 ratio^(-1/5)`` within [0.2, 10], never shrinking after an accepted step) and the same
first-step estimate (Hairer, Norsett & Wanner, Solving ODEs I, Sec. II.4). It differs only
where gradients do not flow or in rounding:

- times and step sizes are Python floats, so no gradient flows through a step size
  (torchdiffeq lets one flow through an estimated first step);
- the error estimate is computed without autograd, as it only steers the step size;
- the end state is the last step's own ``y1``, where torchdiffeq evaluates its interpolant at
  s = 1 (the same value up to rounding);
- the last stage is evaluated at ``t1`` itself (torchdiffeq nudges it to the float below ``t1``,
  for fields discontinuous in time; ours are smooth);
- a step whose error is not finite is rejected and shrunk by the largest factor (0.2);
  torchdiffeq's step size becomes NaN there and the solve fails on its next step.
  Repeated, it ends in a step-size underflow (or the meter's evaluation ceiling).

The test suite checks it against torchdiffeq step for step (tests/test_lean_dopri5.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from replication.flows.solver_failures import NonFiniteState, SolverUnderflow

# Dormand & Prince (1980): stage times, stage weights (the last row is the 5th-order solution,
# so the 7th stage is f(t1, y1), reused as the next step's first) and 5th minus 4th order.
NODES = (1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
WEIGHTS = (
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
ERROR_WEIGHTS = (
    35 / 384 - 1951 / 21600,
    0.0,
    500 / 1113 - 22642 / 50085,
    125 / 192 - 451 / 720,
    -2187 / 6784 + 12231 / 42400,
    11 / 84 - 649 / 6300,
    -1 / 60,
)
ORDER = 5
SAFETY, LARGEST_GROWTH, LARGEST_SHRINK = 0.9, 10.0, 0.2

Norm = Callable[[Tensor], Tensor]


def _combine(start: Tensor, slopes: list[Tensor], weights: tuple[float, ...], dt: float) -> Tensor:
    """``start + dt * sum_j weights[j] slopes[j]``, one fused add per nonzero weight."""
    total = start
    for slope, weight in zip(slopes, weights, strict=False):
        if weight:
            total = torch.add(total, slope, alpha=weight * dt)
    return total


def _time(value: float, like: Tensor) -> Tensor:
    return torch.tensor(value, dtype=like.dtype, device=like.device)


def _step_tensor(value: float, like: Tensor) -> Tensor:
    return torch.tensor(value, dtype=torch.float64, device=like.device)


def first_step(
    field: Callable,
    t0: float,
    y0: Tensor,
    f0: Tensor,
    atol: float,
    rtol: float,
    norm: Norm,
    direction: float = 1.0,
) -> float:
    """The size of a first step by Hairer et al.'s estimate (one evaluation of ``field``), as
    torchdiffeq computes it for a method of order 5; ``direction`` is -1 backwards in time."""
    y0, f0 = y0.detach(), f0.detach()
    scale = atol + y0.abs() * rtol
    d0, d1 = float(norm(y0 / scale)), float(norm(f0 / scale))
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    # Evaluated in the solve's grad mode, so evaluation meters count it with the solve's own
    # evaluations; the result is detached at once (no gradient flows through a step size).
    f1 = field(_time(t0 + direction * h0, y0), y0 + (direction * h0) * f0).detach()
    d2 = float(norm((f1 - f0) / scale)) / h0
    if d1 <= 1e-15 and d2 <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1 / ORDER)
    return min(100 * h0, h1)


def _scale_factor(ratio: float) -> float:
    """How much the next step grows or shrinks after a step with error ``ratio``."""
    if ratio == 0:
        return LARGEST_GROWTH
    if not math.isfinite(ratio):
        return LARGEST_SHRINK
    smallest = 1.0 if ratio < 1 else LARGEST_SHRINK  # a step within tolerance never shrinks
    return min(LARGEST_GROWTH, max(SAFETY * ratio ** (-1 / ORDER), smallest))


def solve(
    field: Callable,
    y0: Tensor,
    t0: float,
    t1: float,
    atol: float,
    rtol: float,
    norm: Norm,
    initial_step: float | None = None,
) -> Tensor:
    """The state at ``t1`` of ``dy/dt = field(t, y)`` from ``y0`` at ``t0`` (either direction),
    differentiable by direct backpropagation. Starts with ``initial_step`` if given, else
    estimates it. ``field`` may define torchdiffeq's callbacks ``callback_step`` (before each
    step), ``callback_accept_step`` and ``callback_reject_step``, called with the same
    arguments (0-dim float64 tensors for times); they may raise to end the solve."""
    direction = 1.0 if t1 >= t0 else -1.0
    on_step = getattr(field, "callback_step", None)
    on_accept = getattr(field, "callback_accept_step", None)
    on_reject = getattr(field, "callback_reject_step", None)
    t, y = t0, y0
    slope = field(_time(t0, y0), y0)
    if initial_step is None:
        initial_step = first_step(field, t0, y0, slope, atol, rtol, norm, direction)
    dt = abs(initial_step) * direction
    while (t1 - t) * direction > 0:
        if on_step is not None:
            on_step(_step_tensor(t, y), y, _step_tensor(dt, y))
        if t + dt == t:  # (a caller's callback may have raised this already)
            raise SolverUnderflow.of_step(dt)
        if not bool(torch.isfinite(y).all()):
            raise NonFiniteState("the ODE state became NaN or infinite during the solve")
        end = t + dt
        if (end - t1) * direction >= 0:  # land on t1 exactly, never past it
            end, dt = t1, t1 - t
        slopes = [slope]
        for node, weights in zip(NODES, WEIGHTS, strict=True):
            stage = _combine(y, slopes, weights, dt)
            stage_time = end if node == 1.0 else t + node * dt
            slopes.append(field(_time(stage_time, y), stage))
        y_next = stage  # the last stage's state is the 5th-order solution
        with torch.no_grad():
            error = _combine(torch.zeros_like(y), slopes, ERROR_WEIGHTS, dt)
            tolerance = atol + rtol * torch.maximum(y.abs(), y_next.abs())
            ratio = float(norm(error / tolerance))
        accepted = ratio <= 1
        if accepted:
            if on_accept is not None:
                on_accept(_step_tensor(t, y), y, _step_tensor(dt, y))
            t, y, slope = end, y_next, slopes[-1]
        elif on_reject is not None:
            on_reject(_step_tensor(t, y), y, _step_tensor(dt, y))
        dt *= _scale_factor(ratio)
    return y
