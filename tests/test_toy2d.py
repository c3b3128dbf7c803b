"""The toy 2D densities: seeded generators, exact log-densities and Monte-Carlo entropies.

Densities are checked against the generators three ways: they integrate to one on a fine grid,
binned grid masses match histograms of samples (chi-square), and the Monte-Carlo entropy of
samples matches the grid entropy -sum p log p. Each generator's structure is checked against
statistics that follow from its definition.
"""

from __future__ import annotations

import functools
import math
import random

import numpy as np
import pytest
import torch

from replication.datasets import toy2d
from replication.typed import ConfigError

NAMES = toy2d.NAMES
F64 = torch.float64
BIN = 0.5  # histogram bin width; every grid spacing divides it
# integration box [-half, half]^2 and grid spacing (at most the smallest noise std)
BOXES = {
    "8gaussians": (5.0, 0.05),
    "2spirals": (4.5, 0.1),
    "checkerboard": (4.5, 0.05),
    "circles": (4.5, 0.05),
    "moons": (4.0, 0.05),
    "pinwheel": (6.0, 0.1),
    "rings": (4.0, 0.025),
    "swissroll": (4.5, 0.05),
}


@functools.cache
def grid(name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cell midpoints of the box, their log-densities and their masses p h^2."""
    half, h = BOXES[name]
    cells = round(2 * half / h)
    axis = -half + h * (torch.arange(cells, dtype=F64) + 0.5)
    points = torch.cartesian_prod(axis, axis)
    log_p = toy2d.log_density(name, points)
    return points, log_p, log_p.exp() * h**2


def bin_index(name: str, x: torch.Tensor) -> torch.Tensor:
    """Index of the BIN x BIN square holding each point; one extra index for outside the box."""
    half = BOXES[name][0]
    per_axis = round(2 * half / BIN)
    cell = torch.floor((x.to(F64) + half) / BIN).long()
    inside = ((cell >= 0) & (cell < per_axis)).all(dim=1)
    return torch.where(inside, cell[:, 0] * per_axis + cell[:, 1], per_axis**2)


def chi_square(name: str, x: torch.Tensor) -> tuple[float, int]:
    """Pearson statistic of the histogram of x against the grid masses, and its dof."""
    points, _, mass = grid(name)
    bins = round(2 * BOXES[name][0] / BIN) ** 2 + 1
    expected = torch.bincount(bin_index(name, points), weights=mass, minlength=bins)
    expected[-1] = (1 - mass.sum()).clamp(min=0)
    expected = expected * len(x)
    observed = torch.bincount(bin_index(name, x), minlength=bins).to(F64)
    big = expected >= 5  # pool the bins with few expected counts into one
    observed = torch.cat([observed[big], observed[~big].sum()[None]])
    expected = torch.cat([expected[big], expected[~big].sum()[None]])
    keep = expected > 0
    stat = ((observed - expected)[keep] ** 2 / expected[keep]).sum().item()
    return stat, int(keep.sum()) - 1


def chi_square_limit(dof: int) -> float:
    return dof + 5 * math.sqrt(2 * dof)


def assert_near(actual: torch.Tensor, expected: torch.Tensor, atol: float) -> None:
    assert actual.shape == expected.shape
    assert (actual - expected).abs().max().item() <= atol


def mean_and_se(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return values.mean(dim=0), values.std(dim=0) / math.sqrt(len(values))


# ------------------------------------------------------------------------------- interface


@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_and_any_n(name: str) -> None:
    for n in (1, 7, 1000):
        x = toy2d.sample(name, n, seed=0)
        assert x.shape == (n, 2) and x.dtype == torch.float32
        assert torch.isfinite(x).all()
    x64 = toy2d.sample_f64(name, 7, seed=0)
    assert x64.dtype == F64 and torch.equal(x64.to(torch.float32), toy2d.sample(name, 7, 0))


@pytest.mark.parametrize("name", NAMES)
def test_reproducible_per_seed(name: str) -> None:
    torch.manual_seed(1)
    first = toy2d.sample(name, 1000, seed=5)
    torch.manual_seed(2)  # the global seed must not matter
    assert torch.equal(first, toy2d.sample(name, 1000, seed=5))
    assert not torch.equal(first, toy2d.sample(name, 1000, seed=6))


def test_global_rng_state_untouched() -> None:
    torch_state, np_state, py_state = (
        torch.get_rng_state(),
        np.random.get_state(),
        random.getstate(),
    )
    for name in NAMES:
        toy2d.sample(name, 50, seed=3)
        toy2d.entropy(name, n=50, seed=4)
    assert torch.equal(torch.get_rng_state(), torch_state)
    np_after = np.random.get_state()
    assert np_after[0] == np_state[0] and np.array_equal(np_after[1], np_state[1])
    assert np_after[2:] == np_state[2:]
    assert random.getstate() == py_state


def test_invalid_arguments() -> None:
    with pytest.raises(ConfigError, match="unknown toy dataset 'spiral'.*8gaussians"):
        toy2d.sample("spiral", 10, 0)
    with pytest.raises(ConfigError, match="unknown toy dataset"):
        toy2d.log_density("gaussians", torch.zeros(3, 2))
    for n in (0, -3):
        with pytest.raises(ConfigError, match=">= 1"):
            toy2d.sample("moons", n, 0)
    with pytest.raises(ValueError, match=r"\(m, 2\)"):
        toy2d.log_density("moons", torch.zeros(3))


@pytest.mark.parametrize("name", NAMES)
def test_log_density_shape_and_dtype(name: str) -> None:
    log_p = toy2d.log_density(name, torch.zeros(5, 2, dtype=torch.float32))
    assert log_p.shape == (5,) and log_p.dtype == F64
    assert toy2d.log_density(name, torch.zeros(0, 2)).shape == (0,)


def test_group_sizes_rule() -> None:
    """n // k per group; the last n mod k groups get one more (inner circles, moon, spiral)."""
    assert toy2d._group_sizes(7, 2) == [3, 4]
    assert toy2d._group_sizes(1, 2) == [0, 1]
    assert toy2d._group_sizes(4003, 4) == [1000, 1001, 1001, 1001]
    points = toy2d._on_circles(7, (1.0, 0.5))
    angles = torch.atan2(points[:, 1], points[:, 0]).remainder(2 * math.pi)
    assert_near(points.norm(dim=1), torch.tensor([1.0] * 3 + [0.5] * 4, dtype=F64), 1e-15)
    step = torch.tensor([0, 1, 2, 0, 1, 2, 3], dtype=F64) * 2 * math.pi
    assert_near(angles, step / torch.tensor([3.0] * 3 + [4.0] * 4, dtype=F64), 1e-14)


# ------------------------------------------------------------------- structure of each density


def test_eight_gaussians_centres() -> None:
    x = toy2d.sample_f64("8gaussians", 16_000, seed=1)
    angle = torch.arange(8, dtype=F64) * math.pi / 4
    centres = 4 / 1.414 * torch.stack([angle.cos(), angle.sin()], dim=1)
    nearest = torch.cdist(x, centres).argmin(dim=1)
    counts = torch.bincount(nearest, minlength=8).to(F64)
    assert ((counts - 2000).abs() < 5 * math.sqrt(2000 * 7 / 8)).all()
    for k in range(8):
        mean, se = mean_and_se(x[nearest == k])
        assert ((mean - centres[k]).abs() < 5 * se).all()
        std = x[nearest == k].std(dim=0)
        assert ((std / (0.5 / 1.414) - 1).abs() < 0.07).all()


def test_checkerboard_support() -> None:
    x = toy2d.sample("checkerboard", 16_000, seed=1)
    cell = torch.floor(x / 2).long()
    assert ((cell >= -2) & (cell <= 1)).all()
    assert ((cell.sum(dim=1) % 2) == 0).all()  # only the 8 squares with i + j even
    index = (cell[:, 0] + 2) * 4 + cell[:, 1] + 2
    counts = torch.bincount(index, minlength=16).reshape(4, 4)
    assert ((counts[cell_parity(0)] - 2000).abs() < 5 * math.sqrt(2000)).all()
    assert (counts[cell_parity(1)] == 0).all()
    assert (toy2d.log_density("checkerboard", x) == -math.log(32)).all()
    off = torch.tensor([[1.0, -1.0], [-3.0, 3.0], [4.5, 0.5], [0.5, -4.5]])
    assert (toy2d.log_density("checkerboard", off) == -math.inf).all()


def test_checkerboard_float32_rounding_stays_inside(monkeypatch: pytest.MonkeyPatch) -> None:
    """Uniform draws just below 1 put float64 points 1e-11 below a square's upper edge."""
    below_one = lambda g, *shape: torch.full(shape, 1 - 2.0**-40, dtype=F64)
    monkeypatch.setattr(toy2d, "_rand", below_one)
    x = toy2d.sample("checkerboard", 64, seed=0)
    assert (x < 4).all()
    assert torch.isfinite(toy2d.log_density("checkerboard", x)).all()


def cell_parity(parity: int) -> torch.Tensor:
    i, j = torch.meshgrid(torch.arange(4), torch.arange(4), indexing="ij")
    return (i + j) % 2 == parity


def test_circles_radii_and_split() -> None:
    x = toy2d.sample_f64("circles", 10_001, seed=2)
    radius = x.norm(dim=1)
    outer = radius > 2.25
    assert abs(int(outer.sum()) - 5000) <= 30  # 5000 outer, 5001 inner; ~0.1% cross 2.25
    for group, r in ((outer, 3.0), (~outer, 1.5)):
        mean, se = mean_and_se(radius[group])
        assert abs(mean - (r + 0.24**2 / (2 * r))) < 5 * se + 0.005
        histogram = torch.histc(radius[group], bins=20, min=r - 1, max=r + 1)
        assert abs((histogram.argmax().item() + 0.5) * 0.1 - 1) <= 0.15  # peak at r


def test_rings_radii_split_and_shuffle() -> None:
    x = toy2d.sample_f64("rings", 4003, seed=2)
    radii = torch.tensor([3.0, 2.25, 1.5, 0.75], dtype=F64)
    ring = (x.norm(dim=1)[:, None] - radii).abs().argmin(dim=1)
    assert torch.bincount(ring, minlength=4).tolist() == [1000, 1001, 1001, 1001]
    for k in range(4):
        mean, se = mean_and_se(x[ring == k].norm(dim=1))
        assert abs(mean - (radii[k] + 0.08**2 / (2 * radii[k]))) < 5 * se + 0.002
    prefix = torch.bincount(ring[:400], minlength=4)
    assert (prefix > 50).all()  # shuffled rows: any prefix holds every ring


def test_moons_mean_and_point_symmetry() -> None:
    x = toy2d.sample_f64("moons", 20_000, seed=3)
    mean, se = mean_and_se(x)
    assert ((mean - torch.tensor([0.0, 0.3], dtype=F64)).abs() < 5 * se).all()
    # the inner moon is the outer one reflected through (0, 0.3)
    mirrored = torch.tensor([0.0, 0.6], dtype=F64) - x[:500]
    log_p = toy2d.log_density("moons", x[:500])
    assert_near(toy2d.log_density("moons", mirrored), log_p, 1e-10)


def test_swissroll_radius_and_winding() -> None:
    x = toy2d.sample_f64("swissroll", 20_000, seed=4)
    square = x.square().sum(dim=1)
    mean, se = mean_and_se(square)
    assert abs(mean - (9.75 * math.pi**2 + 2) / 25) < 5 * se  # E t^2 = 9.75 pi^2
    radius = square.sqrt()
    assert radius.min() > 0.3 * math.pi - 1 and radius.max() < 0.9 * math.pi + 1
    # counter-clockwise winding: the angle of a point is t ~ 5 |x| (mod 2 pi), up to the noise
    winding = (torch.atan2(x[:, 1], x[:, 0]) - 5 * radius).cos().mean()
    mirrored = (torch.atan2(-x[:, 1], x[:, 0]) - 5 * radius).cos().mean()
    assert winding > 0.5 and abs(mirrored) < 0.05


def test_two_spirals_symmetry_and_moments() -> None:
    x = toy2d.sample_f64("2spirals", 20_000, seed=5)
    mean, se = mean_and_se(x)
    assert (mean.abs() < 5 * se).all()
    e_dot = 0.25 * (4 / (3 * math.pi) + 2 - 8 / (9 * math.pi**2))  # E[P . J], J ~ U[0, .5]^2
    expected = (4.5 * math.pi**2 + 2 * e_dot + 1 / 6) / 9 + 2 * 0.1**2
    mean, se = mean_and_se(x.square().sum(dim=1))
    assert abs(mean - expected) < 5 * se
    log_p = toy2d.log_density("2spirals", x[:500])
    assert_near(toy2d.log_density("2spirals", -x[:500]), log_p, 1e-10)


def test_pinwheel_orientation_and_scale() -> None:
    x = toy2d.sample_f64("pinwheel", 20_000, seed=6)
    mean, se = mean_and_se(x.square().sum(dim=1))
    assert abs(mean - 4.4) < 5 * se  # 4 E|f|^2 = 4 (1 + 0.09 + 0.01)
    mirrored = x * torch.tensor([1.0, -1.0], dtype=F64)  # the pinwheel turning the other way
    log_p = toy2d.log_density("pinwheel", x).mean()
    assert log_p > toy2d.log_density("pinwheel", mirrored).mean() + 2
    stat, dof = chi_square("pinwheel", mirrored)
    assert stat > 10 * chi_square_limit(dof)


# ------------------------------------------------------------ densities against the generators


@pytest.mark.parametrize("name", NAMES)
def test_density_integrates_to_one(name: str) -> None:
    _, _, mass = grid(name)
    assert abs(mass.sum().item() - 1) < 1e-3


@pytest.mark.parametrize("name", NAMES)
def test_density_matches_histogram(name: str) -> None:
    stat, dof = chi_square(name, toy2d.sample(name, 20_000, seed=7))
    assert dof > 20
    assert stat < chi_square_limit(dof)


@pytest.mark.parametrize("name", NAMES)
def test_entropy_matches_grid_entropy(name: str) -> None:
    _, log_p, mass = grid(name)
    on_grid = -(mass * torch.where(mass > 0, log_p, 0)).sum().item()
    estimate, se = toy2d.entropy(name, n=20_000, seed=8)
    assert abs(estimate - on_grid) < 5 * se + 1e-6


@pytest.mark.parametrize("name", ["moons", "swissroll", "2spirals"])
def test_curve_quadrature_converged(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    x = toy2d.sample_f64(name, 600, seed=9)
    x[300:] += 0.3 * torch.randn(300, 2, dtype=F64)  # off the samples, log p > -30
    log_p = toy2d.log_density(name, x)
    monkeypatch.setattr(toy2d, "_NODES_PER_STD", 24)
    assert_near(toy2d.log_density(name, x), log_p, 1e-9)


def test_pinwheel_root_finding_converged(monkeypatch: pytest.MonkeyPatch) -> None:
    far = 16 * torch.rand(300, 2, dtype=F64) - 8  # |x| < 12, where the brackets are exact
    x = torch.cat([toy2d.sample_f64("pinwheel", 300, seed=9), far])
    log_p = toy2d.log_density("pinwheel", x)
    assert torch.isfinite(log_p).all()
    monkeypatch.setattr(toy2d, "_PSI_GRID", 8192)
    assert_near(toy2d.log_density("pinwheel", x), log_p, 1e-9)


def pinwheel_density_via_f1(x: np.ndarray) -> np.ndarray:
    """p(x) by the change of variables parametrised by f1 instead of psi (numpy, independent).

    For arm k and a trial f1, f = R(a(f1)) x / 2 must have first coordinate f1: the roots of
    g(f1) = f1 - (R(a) y)_1 on a dense grid, refined by bisection; det dy/df = 1 + a'(f1) f2.
    """
    y = x / 2
    f1_grid = np.linspace(-3.0, 5.0, 20_001)
    density = np.zeros(len(y))
    for k in range(5):
        values = f1_grid - rotate(f1_grid, k, y[:, :1], y[:, 1:])[0]
        point, cell = np.nonzero(np.sign(values[:, 1:]) != np.sign(values[:, :-1]))
        low, high, y1, y2 = f1_grid[cell], f1_grid[cell + 1], y[point, 0], y[point, 1]
        sign_low = np.sign(low - rotate(low, k, y1, y2)[0])
        for _ in range(60):
            mid = (low + high) / 2
            same = np.sign(mid - rotate(mid, k, y1, y2)[0]) == sign_low
            low, high = np.where(same, mid, low), np.where(same, high, mid)
        f1 = (low + high) / 2
        f2 = rotate(f1, k, y1, y2)[1]
        p_f = np.exp(-(((f1 - 1) / 0.3) ** 2 + (f2 / 0.1) ** 2) / 2) / (2 * np.pi * 0.03)
        np.add.at(density, point, p_f / np.abs(1 + 0.25 * np.exp(f1) * f2))
    return density / 5 / 4


def rotate(f1: np.ndarray, k: int, y1: np.ndarray, y2: np.ndarray) -> tuple:
    """R(a) y with a = 2 pi k / 5 + 0.25 exp(f1): the f that y = R(-a) f came from."""
    a = 2 * np.pi * k / 5 + 0.25 * np.exp(f1)
    return np.cos(a) * y1 - np.sin(a) * y2, np.sin(a) * y1 + np.cos(a) * y2


def test_pinwheel_density_against_independent_inversion() -> None:
    x = toy2d.sample_f64("pinwheel", 200, seed=10)
    x[100:] += 0.3 * torch.randn(100, 2, dtype=F64)
    expected = np.log(pinwheel_density_via_f1(x.numpy()))
    assert np.abs(toy2d.log_density("pinwheel", x).numpy() - expected).max() < 1e-8


# ------------------------------------------------------------------------------- entropies


def test_checkerboard_entropy_is_log_32() -> None:
    estimate, se = toy2d.entropy("checkerboard")
    assert abs(estimate - math.log(32)) <= max(3 * se, 1e-12)


def test_eight_gaussians_entropy_against_quadrature() -> None:
    """-integral p log p of the mixture, written out independently in numpy on a fine grid."""
    std, h = 0.5 / 1.414, 0.01
    axis = np.arange(-6 + h / 2, 6, h)
    x1, x2 = np.meshgrid(axis, axis, indexing="ij")
    p = np.zeros_like(x1)
    for k in range(8):
        c1, c2 = 4 / 1.414 * np.cos(k * np.pi / 4), 4 / 1.414 * np.sin(k * np.pi / 4)
        p += np.exp(-((x1 - c1) ** 2 + (x2 - c2) ** 2) / (2 * std**2)) / (16 * np.pi * std**2)
    exact = float(-(p * np.log(np.maximum(p, 1e-300))).sum() * h**2)
    separated = np.log(8) + 1 + np.log(2 * np.pi * std**2)  # minus ~0.006 for the overlaps
    assert -0.01 < exact - separated < 0
    estimate, se = toy2d.entropy("8gaussians")
    assert abs(estimate - exact) < 3 * se


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_full_entropy_matches_grid_entropy(name: str) -> None:
    _, log_p, mass = grid(name)
    on_grid = -(mass * torch.where(mass > 0, log_p, 0)).sum().item()
    estimate, se = toy2d.entropy(name)
    assert abs(estimate - on_grid) < 4 * se + 1e-6
