"""Continuous flows checked against known answers (float64, tiny sizes).

Statistical checks compare a Monte Carlo mean with its target within 4 standard errors of the
mean (estimated from the same samples): a correct implementation fails one such check with
probability about 6e-5, and every test is seeded.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from replication.flows import build
from replication.flows.augmented import (
    EndTime,
    ExactTrace,
    Hutchinson,
    gaussian_probe,
    rademacher_probe,
)
from replication.flows.continuous import (
    ContinuousFlow,
    Integration,
    NFECounter,
    NFELimitExceeded,
    SolverFailure,
    SolverOptions,
    SolverUnderflow,
)
from replication.flows.dynamics import (
    ACTIVATIONS,
    ConcatSquashMLP,
    Dynamics,
    LinearDynamics,
    PlanarHyperDynamics,
)
from replication.typed import ConfigError

TIGHT = SolverOptions("dopri5", atol=1e-10, rtol=1e-10)
RK4 = SolverOptions("rk4", step_size=0.25)


class SquareField(Dynamics):
    """``dz/dt = z^2``: from z = 1 the solution 1 / (1 - t) blows up at t = 1."""

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        return z * z

    def forward_with_tangents(self, t: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        return z * z, torch.diag_embed(2 * z).permute(1, 0, 2)


def block(
    dynamics: Dynamics,
    divergence=None,
    *,
    end_time: float = 0.7,
    learn: bool = False,
    solver: SolverOptions = TIGHT,
    eval_solver: SolverOptions | None = None,
    eval_divergence=None,
    **options,
) -> ContinuousFlow:
    divergence = divergence or ExactTrace()
    return ContinuousFlow(
        dynamics,
        EndTime(end_time, learn),
        train=Integration(solver, divergence),
        evaluate=Integration(eval_solver or solver, eval_divergence or divergence),
        counter=NFECounter(),
        **options,
    ).double()


@pytest.fixture
def matrix() -> Tensor:
    return torch.tensor([[-0.5, 1.2, 0.3], [0.4, 0.2, -0.7], [0.1, -0.6, 0.3]], dtype=torch.float64)


def assert_within_four_standard_errors(samples: Tensor, target: Tensor) -> None:
    error = (samples.mean(0) - target).abs()
    bound = 4 * samples.std(0) / math.sqrt(samples.shape[0])
    assert (error < bound).all(), (error, bound)


# Linear dynamics: z(T) = expm(T A) z(0), logdet = T tr(A).


@pytest.mark.device
def test_linear_field_flow_and_exact_logdet(matrix, device):
    flow = block(LinearDynamics(matrix)).to(device)
    x = torch.randn(6, 3, dtype=torch.float64, device=device)
    z, logdet = flow(x)
    expected = x @ torch.linalg.matrix_exp(0.7 * matrix).T.to(device)
    torch.testing.assert_close(z, expected, atol=1e-8, rtol=1e-8)
    torch.testing.assert_close(
        logdet,
        torch.full((6,), 0.7 * matrix.trace().item(), dtype=torch.float64, device=device),
        atol=1e-8,
        rtol=0,
    )


@pytest.mark.device
@pytest.mark.parametrize("probe", [gaussian_probe, rademacher_probe])
def test_linear_field_hutchinson_logdet_in_expectation(matrix, probe, device):
    flow = block(LinearDynamics(matrix), Hutchinson(probe)).to(device)
    with torch.no_grad():
        _, logdet = flow(torch.randn(4000, 3, dtype=torch.float64, device=device))
    assert_within_four_standard_errors(
        logdet.unsqueeze(1), 0.7 * matrix.trace().reshape(1).to(device)
    )


def test_probe_is_drawn_once_per_solve(matrix):
    """Each sample's logdet is exactly T e^T A e for the probe e drawn at the start: the probe
    stayed fixed through all the solver's evaluations."""
    flow = block(LinearDynamics(matrix), Hutchinson(gaussian_probe))
    x = torch.randn(5, 3, dtype=torch.float64)
    torch.manual_seed(7)
    probe = torch.randn_like(x)
    torch.manual_seed(7)
    _, logdet = flow(x)
    torch.testing.assert_close(logdet, 0.7 * torch.einsum("bi,ij,bj->b", probe, matrix, probe))


@pytest.mark.parametrize("probe", [gaussian_probe, rademacher_probe])
def test_hutchinson_matches_exact_trace_of_ffjord_dynamics(probe):
    dynamics = ConcatSquashMLP(3, (8, 8)).double()
    t = torch.tensor(0.4, dtype=torch.float64)
    points = torch.randn(3, 3, dtype=torch.float64)
    repeated = points.repeat_interleave(20_000, dim=0)
    _, exact = dynamics.forward_with_trace(t, points)
    with torch.no_grad():
        _, estimates = Hutchinson(probe).start(repeated).trace(dynamics, t, repeated)
    assert_within_four_standard_errors(estimates.view(3, -1).T, exact)


@pytest.mark.parametrize(
    "dynamics",
    [
        ConcatSquashMLP(3, (5, 6)),
        ConcatSquashMLP(3, (5,), ACTIVATIONS["softplus"]),
        ConcatSquashMLP(3, ()),
        PlanarHyperDynamics(3, units=7, hidden=(4,)),
    ],
    ids=["concat-squash-tanh", "concat-squash-softplus", "concat-squash-linear", "planar"],
)
def test_forward_jacobian_matches_autograd(dynamics):
    dynamics = dynamics.double()
    t, z = torch.tensor(0.3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    value, jacobian = dynamics.forward_with_jacobian(t, z)
    expected = torch.func.vmap(torch.func.jacrev(lambda p: dynamics(t, p[None])[0]))(z)
    torch.testing.assert_close(value, dynamics(t, z))
    torch.testing.assert_close(jacobian, expected)
    _, trace = dynamics.forward_with_trace(t, z)
    torch.testing.assert_close(trace, expected.diagonal(dim1=1, dim2=2).sum(-1))


@pytest.mark.parametrize("probe", ["gaussian", "rademacher"])
def test_hutchinson_flow_is_unbiased_for_exact_logdet_and_jacobian_term(probe):
    """Along a nonlinear FFJORD flow the trajectory does not depend on the probe, so the
    Hutchinson logdet and Jacobian term are unbiased for the exact ones at every x."""
    options = {"hidden": (8, 8), "kinetic_weight": 0.1, "jacobian_weight": 0.1, "probe": probe}
    tight = {"atol": 1e-9, "rtol": 1e-9}
    exact = build("rnode", (2,), train_solver=tight, **options).double()
    with torch.no_grad():
        for parameter in exact.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    sampled = build("rnode", (2,), train_solver=tight, divergence="hutchinson", **options)
    sampled.double().load_state_dict(exact.state_dict())
    points = torch.randn(2, 2, dtype=torch.float64)
    with torch.no_grad(), exact.solving("train"), sampled.solving("train"):
        _, logdet, penalty = exact.transform.forward_with_penalty(points)
        repeated = points.repeat_interleave(3000, dim=0)
        _, logdets, penalties = sampled.transform.forward_with_penalty(repeated)
    assert_within_four_standard_errors(logdets.view(2, -1).T, logdet)
    assert_within_four_standard_errors(penalties.jacobian.view(2, -1).T, penalty.jacobian)
    torch.testing.assert_close(penalties.kinetic.view(2, -1).T, penalty.kinetic.expand(3000, 2))


# RNODE's integrals: kinetic T ||c||^2 / 2D for a constant field, Jacobian T ||A||_F^2 / D.


@pytest.mark.device
def test_constant_field_kinetic_energy_and_zero_jacobian_term(device):
    shift = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64, device=device)
    flow = block(
        LinearDynamics(torch.zeros(3, 3), shift), kinetic_weight=2.0, jacobian_weight=3.0
    ).to(device)
    x = torch.randn(4, 3, dtype=torch.float64, device=device)
    z, _, penalty = flow.forward_with_penalty(x)
    kinetic = torch.full(
        (4,), 0.7 * shift.square().sum().item() / 6, dtype=torch.float64, device=device
    )
    torch.testing.assert_close(z, x + 0.7 * shift)
    torch.testing.assert_close(penalty.kinetic, kinetic)
    torch.testing.assert_close(penalty.jacobian, torch.zeros(4, dtype=torch.float64, device=device))
    torch.testing.assert_close(penalty.weighted, 2.0 * kinetic)


@pytest.mark.device
def test_linear_field_jacobian_term_exact(matrix, device):
    flow = block(LinearDynamics(matrix), jacobian_weight=1.0).to(device)
    _, _, penalty = flow.forward_with_penalty(torch.randn(4, 3, dtype=torch.float64, device=device))
    expected = torch.full(
        (4,), 0.7 * matrix.square().sum().item() / 3, dtype=torch.float64, device=device
    )
    torch.testing.assert_close(penalty.jacobian, expected)


@pytest.mark.device
@pytest.mark.parametrize("probe", [gaussian_probe, rademacher_probe])
def test_linear_field_jacobian_term_hutchinson_in_expectation(matrix, probe, device):
    flow = block(LinearDynamics(matrix), Hutchinson(probe), jacobian_weight=1.0).to(device)
    with torch.no_grad():
        _, _, penalty = flow.forward_with_penalty(
            torch.randn(4000, 3, dtype=torch.float64, device=device)
        )
    target = 0.7 * matrix.square().sum().reshape(1).to(device) / 3
    assert_within_four_standard_errors(penalty.jacobian.unsqueeze(1), target)


def test_penalty_states_do_not_drive_the_step_size():
    """The same trajectory with and without the penalty states: same result, same step count."""
    flow = block(ConcatSquashMLP(2, (8, 8)), solver=SolverOptions(), kinetic_weight=0.1)
    x = torch.randn(16, 2, dtype=torch.float64) * 2
    z, logdet = flow(x)
    plain = flow.counter.count
    z_penalised, logdet_penalised, _ = flow.forward_with_penalty(x)
    assert flow.counter.count - plain == plain
    torch.testing.assert_close(z_penalised, z)
    torch.testing.assert_close(logdet_penalised, logdet)


def test_zero_weights_add_no_penalty(matrix):
    _, _, penalty = block(LinearDynamics(matrix)).forward_with_penalty(
        torch.randn(3, 3, dtype=torch.float64)
    )
    assert not any(term.any() for term in penalty)


# Counting, solver settings, failures.


@pytest.mark.parametrize("adjoint", [False, True])
def test_nfe_counts_forward_and_backward_of_rk4(matrix, adjoint):
    """torchdiffeq's rk4 (the 3/8 rule) evaluates 4 times per step, no extra at the ends; the
    adjoint solve re-evaluates the dynamics once per stage of the same grid."""
    flow = block(
        LinearDynamics(matrix), solver=SolverOptions("rk4", step_size=0.25, adjoint=adjoint)
    )
    start = flow.counter.count
    _, logdet = flow(torch.randn(3, 3, dtype=torch.float64))
    forward = flow.counter.count
    logdet.sum().backward()
    backward = flow.counter.count
    assert (forward - start, backward - forward) == (16, 16 if adjoint else 0)


def test_evaluations_counts_blocks_sharing_a_counter_once_each_evaluation():
    flow = build(
        "ffjord", (2,), blocks=2, hidden=(4,), train_solver={"method": "rk4", "step_size": 0.5}
    )
    with flow.solving("train"):
        flow.log_prob(torch.randn(3, 2))
    assert flow.evaluations() == 2 * 8 and flow.counts_evaluations()


@pytest.mark.parametrize("divergence", ["exact", "hutchinson"])
def test_adjoint_and_direct_backprop_agree(divergence):
    """Same gradients, RNODE penalties and learned end time included; with Hutchinson both runs
    draw the same probe (same seed), so they differentiate the same estimate."""
    options = {"hidden": (8, 8), "kinetic_weight": 0.3, "jacobian_weight": 0.2}
    options |= {"learn_end_time": True, "divergence": divergence}
    tight = {"atol": 1e-10, "rtol": 1e-10}
    direct = build("rnode", (2,), train_solver=tight, **options).double()
    adjoint = build("rnode", (2,), train_solver=tight | {"adjoint": True}, **options).double()
    with torch.no_grad():
        for parameter in direct.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    adjoint.load_state_dict(direct.state_dict())
    x = torch.randn(8, 2, dtype=torch.float64)
    for flow in (direct, adjoint):
        torch.manual_seed(3)
        with flow.solving("train"):
            log_prob, penalty = flow.log_prob_with_penalty(x)
            (penalty.weighted - log_prob).mean().backward()
    for (name, mine), theirs in zip(direct.named_parameters(), adjoint.parameters(), strict=True):
        assert mine.grad.abs().sum() > 0, name
        torch.testing.assert_close(mine.grad, theirs.grad, atol=1e-6, rtol=1e-5, msg=name)


def test_train_and_eval_settings_switch_by_phase_only(matrix):
    flow = block(
        LinearDynamics(matrix),
        Hutchinson(rademacher_probe),
        solver=RK4,
        eval_solver=SolverOptions("euler", step_size=0.5),
        eval_divergence=ExactTrace(),
    )
    x = torch.randn(5, 3, dtype=torch.float64)
    counts = []
    assert flow.phase == "evaluate"  # the accurate solver unless a caller asks otherwise
    for phase in ("train", "evaluate"):
        previous = flow.use_phase(phase)
        for mode in (flow.train, flow.eval):  # torch's mode never picks the solver
            mode()
            before = flow.counter.count
            with torch.no_grad():
                logdets = [flow(x)[1] for _ in range(2)]
            counts.append((flow.counter.count - before) // 2)
            same = torch.equal(*logdets)
            assert same == (phase == "evaluate")  # fresh probes in training, exact trace else
        flow.use_phase(previous)
    assert counts == [16, 16, 2, 2]
    with pytest.raises(ValueError, match="phase must be one of"):
        flow.use_phase("test")


def test_nfe_ceiling_stops_a_stiff_solve(matrix):
    stiff = LinearDynamics(-1e6 * torch.eye(3, dtype=torch.float64))
    flow = block(stiff, solver=SolverOptions(), max_nfe=200)
    with pytest.raises(NFELimitExceeded, match="max_nfe = 200"):
        flow(torch.randn(4, 3, dtype=torch.float64))
    assert flow.counter.count == 201


def test_nfe_ceiling_applies_to_the_adjoint_solve(matrix):
    flow = block(
        LinearDynamics(matrix),
        solver=SolverOptions("rk4", step_size=0.25, adjoint=True),
        max_nfe=16,
    )
    _, logdet = flow(torch.randn(2, 3, dtype=torch.float64))  # 16 evaluations: allowed
    logdet.sum().backward(retain_graph=True)  # its adjoint solve, 16 more: allowed
    with pytest.raises(NFELimitExceeded):  # a second adjoint solve through the same meter
        logdet.sum().backward()


def test_underflow_is_reported_as_solver_failure():
    flow = block(SquareField(1), end_time=2.0, solver=SolverOptions(), max_nfe=100_000)
    with pytest.raises(SolverUnderflow, match="underflow"):
        flow(torch.ones(2, 1, dtype=torch.float64))
    assert issubclass(SolverUnderflow, SolverFailure) and issubclass(SolverFailure, RuntimeError)


def test_solver_options_are_validated():
    with pytest.raises(ConfigError, match="valid choices: .*dopri5.*rk4"):
        SolverOptions("rk5")
    with pytest.raises(ConfigError, match="step_size"):
        SolverOptions("rk4")
    with pytest.raises(ConfigError, match="step_size"):
        SolverOptions("dopri5", step_size=0.1)
    with pytest.raises(ConfigError, match="valid choices: .*euler"):
        build("ffjord", (2,), eval_solver={"method": "Dopri5"})


# The flows as built by the registry.


def test_inverse_of_forward_with_two_blocks():
    solver = {"atol": 1e-10, "rtol": 1e-10}
    flow = build("ffjord", (2,), blocks=2, hidden=(8, 8), train_solver=solver, eval_solver=solver)
    flow = flow.double().eval()
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
        x = torch.randn(6, 2, dtype=torch.float64)
        z, logdet = flow.transform(x)
        back, inverse_logdet = flow.transform.inverse(z)
    torch.testing.assert_close(back, x, atol=1e-7, rtol=1e-7)
    torch.testing.assert_close(inverse_logdet, -logdet, atol=1e-7, rtol=1e-7)


@pytest.mark.parametrize("adjoint", [False, True])
def test_gradient_reaches_the_learned_end_time(adjoint):
    flow = build("ffjord", (2,), hidden=(8,), train_solver={"adjoint": adjoint}).double()
    with flow.solving("train"):
        (-flow.log_prob(torch.randn(8, 2, dtype=torch.float64)).mean()).backward()
    assert flow.transform.end_time.log_value.grad.abs() > 0


def test_defaults_follow_the_references():
    ffjord, rnode = build("ffjord", (2,)).transform, build("rnode", (2,)).transform
    assert sum(p.numel() for p in ffjord.parameters()) == 9224 + 1  # FFJORD's count, plus log T
    assert math.isclose(ffjord.end_time().item(), 0.5, rel_tol=1e-6)
    assert all(isinstance(phase.divergence, ExactTrace) for phase in ffjord.phases.values())
    assert (rnode.kinetic_weight, rnode.jacobian_weight) == (0.01, 0.01)
    assert not rnode.dynamics(torch.tensor(0.0), torch.randn(4, 2)).any()  # zero last layer
