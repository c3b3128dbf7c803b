"""The continuous flows' solver, trace and penalty machinery against closed forms.

For the linear field dz/dt = A z, the flow is z(T) = e^{TA} z(0), the log-determinant is
T tr(A) and the Jacobian penalty integrates to T ||A||_F^2 / D (Jacobian A everywhere); the
kinetic penalty int_0^T ||A z(t)||^2 / (2D) dt has no simpler form and is computed by Gauss-
Legendre quadrature of the exact trajectory. A constant field c has kinetic energy
T ||c||^2 / (2D) and no Jacobian term.

Statistical checks (Hutchinson's estimator) compare a Monte-Carlo mean with its exact value
within Z = 3.29 standard errors: a correct implementation fails one with probability 1e-3
(two-sided normal tail); every check is seeded, so its outcome is reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from replication.checks.records import Check, close
from replication.flows.augmented import (
    PROBES,
    EndTime,
    ExactTrace,
    Hutchinson,
    TraceEstimator,
)
from replication.flows.continuous import ContinuousFlow, Integration
from replication.flows.dynamics import LinearDynamics
from replication.flows.ode import NFECounter, SolverOptions

F64 = torch.float64
Z_CRITICAL = 3.29  # two-sided false-alarm rate 1e-3
END_TIME = 0.7
MATRIX = [[-0.5, 1.2, 0.3], [0.4, 0.2, -0.7], [0.1, -0.6, 0.6]]  # tr(A) = 0.3
SOLVER = SolverOptions("dopri5", atol=1e-10, rtol=1e-10)
EXACT = 1e-7  # agreement expected of a solve at atol = rtol = 1e-10 in float64


def _block(matrix: Tensor, shift: Tensor | None, estimator: TraceEstimator) -> ContinuousFlow:
    phase = Integration(SOLVER, estimator)
    return ContinuousFlow(
        LinearDynamics(matrix, shift), EndTime(END_TIME, learn=False), train=phase,
        evaluate=phase, counter=NFECounter(), kinetic_weight=1.0, jacobian_weight=1.0,
    ).double().eval()  # fmt: skip


def _kinetic_by_quadrature(matrix: Tensor, start: Tensor, nodes: int = 64) -> Tensor:
    """int_0^T ||A e^{tA} z0||^2 / (2D) dt per sample, by Gauss-Legendre on [0, T]."""
    points, weights = np.polynomial.legendre.leggauss(nodes)
    total = torch.zeros(start.shape[0], dtype=F64)
    for point, weight in zip(points, weights, strict=True):
        t = END_TIME * (point + 1) / 2
        velocity = start @ torch.linalg.matrix_exp(t * matrix).T @ matrix.T
        total += weight * END_TIME / 2 * velocity.square().sum(1) / (2 * matrix.shape[0])
    return total


def _statistical(name: str, known: str, exact: float, samples: Tensor) -> Check:
    error = (samples.std() / math.sqrt(len(samples))).item()
    return close(name, known, exact, samples.mean().item(), Z_CRITICAL * error, error,
                 note="false-alarm rate 1e-3")  # fmt: skip


def linear_ode() -> list[Check]:
    """Flow map, log-determinant and both RNODE integrals of dz/dt = A z (and of a constant)."""
    generator = torch.Generator().manual_seed(0)
    matrix = torch.tensor(MATRIX, dtype=F64)
    start = torch.randn(8, 3, generator=generator, dtype=F64)
    dim, trace = matrix.shape[0], matrix.trace().item()
    with torch.no_grad():
        end, logdet, penalty = _block(matrix, None, ExactTrace()).forward_with_penalty(start)
    expected_end = start @ torch.linalg.matrix_exp(END_TIME * matrix).T
    kinetic = _kinetic_by_quadrature(matrix, start)
    frobenius = END_TIME * matrix.square().sum().item() / dim
    checks = [
        close("linear_ode/flow_map", "z(T) = expm(TA) z(0): largest deviation", 0.0,
              (end - expected_end).abs().max().item(), EXACT),
        close("linear_ode/logdet_exact", "log|det dz(T)/dz(0)| = T tr(A)", END_TIME * trace,
              logdet.mean().item(), EXACT),
        close("linear_ode/kinetic", "int ||A z(t)||^2/(2D) dt (64-node Gauss-Legendre): "
              "largest deviation", 0.0, (penalty.kinetic - kinetic).abs().max().item(), EXACT),
        close("linear_ode/jacobian_exact", "int ||A||_F^2 / D dt = T ||A||_F^2 / D", frobenius,
              penalty.jacobian.mean().item(), EXACT),
    ]  # fmt: skip
    return checks + _constant_field() + _hutchinson_along_flow(matrix, frobenius)


def _constant_field() -> list[Check]:
    shift = torch.tensor([0.5, -1.0, 2.0], dtype=F64)
    start = torch.randn(4, 3, generator=torch.Generator().manual_seed(1), dtype=F64)
    block = _block(torch.zeros(3, 3, dtype=F64), shift, ExactTrace())
    with torch.no_grad():
        _, _, penalty = block.forward_with_penalty(start)
    kinetic = END_TIME * shift.square().sum().item() / (2 * 3)
    return [
        close("constant_field/kinetic", "f = c: int ||c||^2/(2D) dt = T ||c||^2 / (2D)",
              kinetic, penalty.kinetic.mean().item(), EXACT),
        close("constant_field/jacobian", "f = c: df/dz = 0, no Jacobian term", 0.0,
              penalty.jacobian.abs().max().item(), EXACT),
    ]  # fmt: skip


def _hutchinson_along_flow(matrix: Tensor, frobenius: float) -> list[Check]:
    """With a probe per sample, logdet and the Jacobian term are right in expectation."""
    torch.manual_seed(2)
    checks = []
    for probe in PROBES:
        start = torch.randn(4000, 3, dtype=F64)
        with torch.no_grad():
            _, logdet, penalty = _block(
                matrix, None, Hutchinson(PROBES[probe])
            ).forward_with_penalty(start)
        checks += [
            _statistical(f"linear_ode/logdet_hutchinson/{probe}",
                         "E[logdet] = T tr(A) (Hutchinson, probe fixed per solve)",
                         END_TIME * matrix.trace().item(), logdet),
            _statistical(f"linear_ode/jacobian_hutchinson/{probe}",
                         "E[int ||e^T A||^2 / D dt] = T ||A||_F^2 / D", frobenius, penalty.jacobian),
        ]  # fmt: skip
    return checks


def hutchinson_unbiased(
    samples: int = 20_000, probes: dict[str, Callable[[Tensor], Tensor]] = PROBES
) -> list[Check]:
    """e^T J e averaged over probes equals tr(J) for a random J, for both probe kinds."""
    generator = torch.Generator().manual_seed(3)
    matrix = torch.randn(5, 5, generator=generator, dtype=F64)
    field = LinearDynamics(matrix).double()
    point = torch.randn(samples, 5, generator=generator, dtype=F64)
    torch.manual_seed(4)
    checks = []
    for probe, draw in probes.items():
        divergence = Hutchinson(draw).start(point)
        with torch.no_grad():
            _, estimates = divergence.trace(field, torch.zeros((), dtype=F64), point)
        checks.append(_statistical(f"hutchinson/unbiased/{probe}",
                                   "E[e^T J e] = tr(J) for E[e e^T] = I", matrix.trace().item(),
                                   estimates))  # fmt: skip
    return checks
