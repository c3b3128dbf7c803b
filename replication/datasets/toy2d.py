"""The eight toy 2D densities of FFJORD (Grathwohl et al. 2019), with exact log-densities.

Each generator is seeded and reproducible; :func:`log_density` is the density of the limit
n -> infinity, in closed form where one exists and otherwise by accurate quadrature:

==============  ===========================================================================
8gaussians      (4 (cos 2pi k/8, sin 2pi k/8) + 0.5 e) / 1.414, k uniform on 0..7
2spirals        +-(-n cos n + j1, n sin n + j2) / 3 + 0.1 e, n = 3pi sqrt(U), j ~ U[0, 0.5]^2
checkerboard    2 (x1, x2): x1 ~ U[-2, 2), x2 = U[0, 1) - 2 B + (floor(x1) mod 2), B ~ {0, 1}
circles         3 (r (cos t, sin t) + 0.08 e), r in {1, 0.5}, t evenly spaced on [0, 2pi)
moons           2 (c(t) + 0.1 e) + (-1, -0.2), c = (cos t, sin t) or (1 - cos t, 0.5 - sin t)
pinwheel        2 R(-a) (1 + 0.3 e1, 0.1 e2), a = 2pi k/5 + 0.25 exp(1 + 0.3 e1), k in 0..4
rings           r (cos t, sin t) + 0.08 e, r in {3, 2.25, 1.5, 0.75}, t evenly spaced
swissroll       ((t cos t, t sin t) + e) / 5, t ~ U[1.5pi, 4.5pi]
==============  ===========================================================================

Here e is standard normal. Groups of points (the two spirals, circles, moons and the four
rings) get n // k points each and the last n mod k groups, in the order listed, one more; so
circles put n // 2 on the outer circle. Their rows are shuffled with the same seed, so any
prefix of a sample is representative.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor
from torch.special import i0e, log_ndtr

from replication.typed import ConfigError, choice_error

NAMES: tuple[str, ...] = (
    "8gaussians", "2spirals", "checkerboard", "circles", "moons", "pinwheel", "rings", "swissroll"
)  # fmt: skip

_F64 = torch.float64
_CHUNK = 2**22  # elements of the (points x nodes) matrices held at once
_TAU = 2 * math.pi


def sample(name: str, n: int, seed: int) -> Tensor:
    """``n`` draws of toy density ``name`` as an ``(n, 2)`` float32 tensor.

    The draws depend only on ``(name, n, seed)``: a private generator seeded with ``seed`` (any
    int) is used, and the global torch, numpy and random states are never read or advanced.
    """
    return sample_f64(name, n, seed).to(torch.float32)


def sample_f64(name: str, n: int, seed: int) -> Tensor:
    """As :func:`sample`, in float64 (the precision every generator computes in)."""
    _check_name(name)
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ConfigError(f"toy dataset size must be an integer >= 1, got {n!r}")
    generator = torch.Generator().manual_seed(int(seed))  # private: global RNG state untouched
    return _SAMPLERS[name](int(n), generator)


def log_density(name: str, x: Tensor) -> Tensor:
    """log p(x) in float64, shape ``(m,)``, of the n -> infinity density ``name`` at ``x (m, 2)``."""
    _check_name(name)
    x = torch.as_tensor(x).to(_F64)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"expected points of shape (m, 2), got {tuple(x.shape)}")
    if len(x) == 0:
        return x.new_zeros(0)
    return _DENSITIES[name](x)


def entropy(name: str, n: int = 200_000, seed: int = 12345) -> tuple[float, float]:
    """Monte-Carlo differential entropy H = -E[log p(X)] in nats, and its standard error.

    X is drawn in float64 by :func:`sample_f64`. The evenly spaced angles of circles and rings
    are a grid of spacing <= 2pi r / (n/4), far finer than their noise at the default n.
    """
    if n < 2:
        raise ConfigError(f"entropy needs n >= 2 draws, got {n!r}")
    log_p = log_density(name, sample_f64(name, n, seed))
    return -log_p.mean().item(), (log_p.std() / math.sqrt(n)).item()


def _check_name(name: str) -> None:
    if name not in NAMES:
        raise choice_error("toy dataset", name, NAMES)


# ----------------------------------------------------------------------------- generators


def _randn(g: torch.Generator, *shape: int) -> Tensor:
    return torch.randn(*shape, generator=g, dtype=_F64)


def _rand(g: torch.Generator, *shape: int) -> Tensor:
    return torch.rand(*shape, generator=g, dtype=_F64)


def _group_sizes(n: int, groups: int) -> list[int]:
    """n // groups points per group; the last n mod groups groups get one more."""
    base, extra = divmod(n, groups)
    return [base + (i >= groups - extra) for i in range(groups)]


def _group_labels(n: int, groups: int) -> Tensor:
    sizes = torch.tensor(_group_sizes(n, groups))
    return torch.repeat_interleave(torch.arange(groups), sizes)


def _eight_gaussians(n: int, g: torch.Generator) -> Tensor:
    angle = torch.randint(8, (n,), generator=g).to(_F64) * (_TAU / 8)
    centre = 4 * torch.stack([angle.cos(), angle.sin()], dim=1)
    return (centre + 0.5 * _randn(g, n, 2)) / 1.414


def _two_spirals(n: int, g: torch.Generator) -> Tensor:
    t = _rand(g, n).sqrt() * (3 * math.pi)  # the spiral parameter (n in the module docstring)
    point = torch.stack([-t * t.cos(), t * t.sin()], dim=1) + 0.5 * _rand(g, n, 2)
    sign = 1.0 - 2.0 * _group_labels(n, 2).to(_F64)  # second group: the negated spiral
    x = sign[:, None] * point / 3 + 0.1 * _randn(g, n, 2)
    return x[torch.randperm(n, generator=g)]


def _checkerboard(n: int, g: torch.Generator) -> Tensor:
    x1 = 4 * _rand(g, n) - 2
    flip = torch.randint(2, (n,), generator=g).to(_F64)
    x2 = _rand(g, n) - 2 * flip + torch.remainder(x1.floor(), 2)
    x = 2 * torch.stack([x1, x2], dim=1)
    # Cap each point at the last float32 below its square's upper edge, so that rounding to
    # float32 can never carry it onto the edge (into an empty square). Moves mass ~1e-7.
    upper = (2 * torch.floor(x / 2) + 2).to(torch.float32)
    return torch.minimum(x, torch.nextafter(upper, upper.new_tensor(-math.inf)).to(_F64))


def _on_circles(n: int, radii: tuple[float, ...]) -> Tensor:
    """Points on circles of ``radii`` (grouped in that order), evenly spaced angles from 0."""
    parts = []
    for radius, size in zip(radii, _group_sizes(n, len(radii)), strict=True):
        angle = torch.arange(size, dtype=_F64) * (_TAU / max(size, 1))
        parts.append(radius * torch.stack([angle.cos(), angle.sin()], dim=1))
    return torch.cat(parts)


def _circles(n: int, g: torch.Generator) -> Tensor:
    x = 3 * (_on_circles(n, _CIRCLE_RADII) + 0.08 * _randn(g, n, 2))
    return x[torch.randperm(n, generator=g)]


def _rings(n: int, g: torch.Generator) -> Tensor:
    x = _on_circles(n, _RING_RADII) + 0.08 * _randn(g, n, 2)
    return x[torch.randperm(n, generator=g)]


def _moons(n: int, g: torch.Generator) -> Tensor:
    t = math.pi * _rand(g, n)
    outer = torch.stack([t.cos(), t.sin()], dim=1)
    inner = torch.stack([1 - t.cos(), 0.5 - t.sin()], dim=1)
    curve = torch.where(_group_labels(n, 2)[:, None] == 1, inner, outer)
    x = 2 * (curve + 0.1 * _randn(g, n, 2)) + torch.tensor([-1.0, -0.2], dtype=_F64)
    return x[torch.randperm(n, generator=g)]


def _pinwheel(n: int, g: torch.Generator) -> Tensor:
    arm = torch.randint(5, (n,), generator=g).to(_F64)
    e = _randn(g, n, 2)
    f1, f2 = 1 + 0.3 * e[:, 0], 0.1 * e[:, 1]
    a = _TAU / 5 * arm + 0.25 * f1.exp()
    # the row vector f times R(a): a rotation by -a (rotating by +a gives the mirror image)
    return 2 * torch.stack([f1 * a.cos() + f2 * a.sin(), -f1 * a.sin() + f2 * a.cos()], dim=1)


def _swissroll(n: int, g: torch.Generator) -> Tensor:
    t = 1.5 * math.pi + 3 * math.pi * _rand(g, n)
    return (torch.stack([t * t.cos(), t * t.sin()], dim=1) + _randn(g, n, 2)) / 5


# ------------------------------------------------------------------------------ densities


def _gaussian_mixture(x: Tensor, centres: Tensor, log_weights: Tensor, std: float) -> Tensor:
    """log sum_j w_j N(x; c_j, std^2 I), chunked over points.

    The exponent -|x - c|^2 / (2 s^2) is expanded as (2 x.c - |c|^2 - |x|^2) / (2 s^2), so the
    work over (points x centres) is one matrix product.
    """
    scaled = centres.T / std**2
    offset = log_weights - centres.square().sum(1) / (2 * std**2)
    rows = max(1, _CHUNK // len(centres))
    parts = [torch.addmm(offset, chunk, scaled).logsumexp(1) for chunk in x.split(rows)]
    return torch.cat(parts) - x.square().sum(1) / (2 * std**2) - math.log(_TAU * std**2)


def _eight_gaussians_density(x: Tensor) -> Tensor:
    angle = torch.arange(8, dtype=_F64) * (_TAU / 8)
    centres = 4 / 1.414 * torch.stack([angle.cos(), angle.sin()], dim=1)
    log_weights = torch.full((8,), -math.log(8), dtype=_F64)
    return _gaussian_mixture(x, centres, log_weights, 0.5 / 1.414)


def _checkerboard_density(x: Tensor) -> Tensor:
    """log 1/32 on the squares [2i, 2i+2) x [2j, 2j+2), -2 <= i, j <= 1, i + j even."""
    cell = torch.floor(x / 2)
    inside = ((cell >= -2) & (cell <= 1)).all(dim=1) & (cell.sum(dim=1).remainder(2) == 0)
    return x.new_full((len(x),), -math.log(32)).masked_fill(~inside, -math.inf)


def _ring_density(x: Tensor, radius: float, std: float) -> Tensor:
    """log of the uniform circle of ``radius`` convolved with N(0, std^2 I):

    p(x) = exp(-(|x|^2 + r^2) / (2 s^2)) I0(r |x| / s^2) / (2 pi s^2), with I0(z) = i0e(z) e^z.
    """
    rho = x.norm(dim=1)
    z = radius * rho / std**2
    return -(rho - radius).square() / (2 * std**2) + i0e(z).log() - math.log(_TAU * std**2)


def _circles_density(x: Tensor, radii: tuple[float, ...], std: float) -> Tensor:
    """log of the equal mixture of :func:`_ring_density` over ``radii``."""
    # The evenly spaced angles are taken in the continuum limit: a uniform angle per circle.
    per_circle = torch.stack([_ring_density(x, r, std) for r in radii], dim=1)
    return per_circle.logsumexp(dim=1) - math.log(len(radii))


def _curve_rule(
    curve: Callable[[Tensor], Tensor], t0: float, t1: float, spacing: float
) -> tuple[Tensor, Tensor]:
    """Composite 8-point Gauss-Legendre (nodes, weights) on [t0, t1], weights summing to 1.

    Panels have equal arc length along ``curve(t)``, at most 8 * ``spacing``, so consecutive
    nodes are on average ``spacing`` apart along the curve.
    """
    fine = torch.linspace(t0, t1, 20_001, dtype=_F64)
    arc = torch.cat([fine.new_zeros(1), curve(fine).diff(dim=0).norm(dim=1).cumsum(0)])
    panels = math.ceil(arc[-1].item() / (8 * spacing))
    edges = np.interp(np.linspace(0.0, arc[-1].item(), panels + 1), arc.numpy(), fine.numpy())
    unit_nodes, unit_weights = np.polynomial.legendre.leggauss(8)
    half = np.diff(edges)[:, None] / 2
    nodes = (edges[:-1, None] + half * (1 + unit_nodes)).ravel()
    weights = (half * unit_weights).ravel() / (t1 - t0)
    return torch.from_numpy(nodes), torch.from_numpy(weights)


def _curve_density(
    x: Tensor, curves: list[Callable[[Tensor], Tensor]], t0: float, t1: float, std: float
) -> Tensor:
    """log of the equal mixture over ``curves`` of N(curve(t), std^2 I), t ~ U[t0, t1]."""
    rules = [_curve_rule(curve, t0, t1, std / _NODES_PER_STD) for curve in curves]
    centres = torch.cat([curve(rule[0]) for curve, rule in zip(curves, rules, strict=True)])
    log_weights = torch.cat([rule[1].log() for rule in rules]) - math.log(len(curves))
    return _gaussian_mixture(x, centres, log_weights, std)


def _outer_moon(t: Tensor) -> Tensor:
    return 2 * torch.stack([t.cos() - 0.5, t.sin() - 0.1], dim=1)


def _inner_moon(t: Tensor) -> Tensor:
    return 2 * torch.stack([0.5 - t.cos(), 0.4 - t.sin()], dim=1)


def _roll(t: Tensor) -> Tensor:
    return torch.stack([t * t.cos(), t * t.sin()], dim=1) / 5


def _spiral(n: Tensor) -> Tensor:
    return torch.stack([-n * n.cos(), n * n.sin()], dim=1) / 3


def _moons_density(x: Tensor) -> Tensor:
    """Noise std 2 * 0.1; the arcs are 2 c(t) + (-1, -0.2), t ~ U[0, pi]."""
    return _curve_density(x, [_outer_moon, _inner_moon], 0.0, math.pi, 0.2)


def _swissroll_density(x: Tensor) -> Tensor:
    """Noise std 1 / 5 around the roll (t cos t, t sin t) / 5, t ~ U[1.5pi, 4.5pi]."""
    return _curve_density(x, [_roll], 1.5 * math.pi, 4.5 * math.pi, 0.2)


def _two_spirals_density(x: Tensor) -> Tensor:
    """Quadrature over n, density 2n / (3pi)^2 on [0, 3pi], of the two spirals.

    Per coordinate the jitter j / 3 ~ U[0, 1/6] (negated spiral: U[-1/6, 0]) convolved with
    N(0, 0.1^2) has the closed form density (Phi((z - a) / s) - Phi((z - b) / s)) / (b - a).
    """
    nodes, weights = _curve_rule(_spiral, 0.0, 3 * math.pi, 0.1 / _NODES_PER_STD)
    box_centre = _spiral(nodes) + 1 / 12
    centres = torch.cat([box_centre, -box_centre]) / 0.1  # in units of the noise std
    weights = torch.cat([weights, weights]) * nodes.repeat(2) / (3 * math.pi)  # 2n/(3pi) / 2
    return _tiled_box_mixture(x / 0.1, centres, weights) + 2 * math.log(6)


def _tiled_box_mixture(t: Tensor, centres: Tensor, weights: Tensor) -> Tensor:
    """:func:`_box_mixture` over only the nodes near each point, to a relative 1e-12.

    A node farther than the reach R (in noise stds) from a point has k < Phi(5/6 - R) in one
    coordinate and k < 0.6 in the other; the weights sum to 1, so a sum S over the nearer
    nodes is trusted when S > 1e12 * 0.6 Phi(5/6 - R). Points failing that (far from both
    spirals) are redone with a longer reach, and last with every node.
    """
    out = t.new_empty(len(t))
    pending = torch.arange(len(t))
    for reach, size in ((10.0, 2.0), (20.0, 10.0)):  # far points are sparse: larger tiles
        out[pending] = _near_box_mixture(t[pending], centres, weights, reach, size)
        trust = math.log(0.6e12) + log_ndtr(torch.tensor(5 / 6 - reach, dtype=_F64)).item()
        pending = pending[out[pending] < trust]
    out[pending] = _box_mixture(t[pending], centres, weights)
    return out


def _near_box_mixture(
    t: Tensor, centres: Tensor, weights: Tensor, reach: float, size: float
) -> Tensor:
    """:func:`_box_mixture` per square tile of side ``size``, over the nodes within ``reach``.

    One small problem per tile (a few hundred points and nodes) stays in cache.
    """
    keys, inverse = torch.unique(torch.floor(t / size), dim=0, return_inverse=True)
    tiles = torch.argsort(inverse).split(torch.bincount(inverse, minlength=len(keys)).tolist())
    out = t.new_empty(len(t))
    for key, rows in zip(keys, tiles, strict=True):
        low = key * size - reach
        near = ((centres >= low) & (centres <= low + size + 2 * reach)).all(dim=1)
        out[rows] = _box_mixture(t[rows], centres[near], weights[near])
    return out


def _box_mixture(t: Tensor, centres: Tensor, weights: Tensor) -> Tensor:
    """log sum_j w_j k(t1 - c_j1) k(t2 - c_j2) with k(t) = Phi(h - |t|) - Phi(-h - |t|), h = 5/6.

    k is U[-h, h] + N(0, 1) times the box width; computed linearly (fast), and in log space
    for the far-away rows where the sum underflows. Chunked over points.
    """
    rows = max(1, _CHUNK // (2 * max(len(centres), 1)))
    return torch.cat([_box_mixture_chunk(chunk, centres, weights) for chunk in t.split(rows)])


def _box_mixture_chunk(t: Tensor, centres: Tensor, weights: Tensor, h: float = 5 / 6) -> Tensor:
    dist = (t[:, None, :] - centres).abs()
    k = (torch.erfc((dist - h) / math.sqrt(2)) - torch.erfc((dist + h) / math.sqrt(2))) / 2
    total = (k.prod(-1) @ weights).log()
    far = total < -600
    if far.any():
        upper = h - dist[far]
        log_upper = log_ndtr(upper)
        log_k = log_upper + torch.log1p(-torch.exp(log_ndtr(upper - 2 * h) - log_upper))
        total[far] = (log_k.sum(-1) + weights.log()).logsumexp(1)
    return total


def _pinwheel_density(x: Tensor) -> Tensor:
    """Change of variables through every preimage: p_x(x) = p_y(x / 2) / 4, where

    p_y(y) = 1/5 sum_k sum_{psi: phi(psi) = phi_y} N(f1; 1, 0.3^2) N(f2; 0, 0.1^2) / |phi'(psi)|.

    In polar coordinates f = r (cos psi, sin psi), y = rho (cos phi, sin phi) the rotation
    keeps r = rho and sets phi = psi - 2pi k/5 - 0.25 exp(r cos psi), so the Jacobian
    determinant is |d phi / d psi| = |1 + 0.25 r sin(psi) exp(r cos psi)|.
    """
    y = x / 2
    rho, phi = y.norm(dim=1), torch.atan2(y[:, 1], y[:, 0])
    rows = max(1, _CHUNK // (_PSI_GRID + 1))
    parts = [_brackets(rho[i : i + rows], phi[i : i + rows], i) for i in range(0, len(y), rows)]
    point, target, low, high = (torch.cat(part) for part in zip(*parts, strict=True))
    r = rho[point]
    psi = _bisect(lambda s: s - 0.25 * torch.exp(r * s.cos()) - target, low, high)
    f1, f2 = r * psi.cos(), r * psi.sin()
    log_f = -(((f1 - 1) / 0.3).square() + (f2 / 0.1).square()) / 2 - math.log(_TAU * 0.03)
    log_terms = log_f - (1 + 0.25 * f2 * f1.exp()).abs().log()
    peak = y.new_full((len(y),), -math.inf).scatter_reduce(0, point, log_terms, "amax")
    total = y.new_zeros(len(y)).index_add(0, point, (log_terms - peak[point]).exp())
    return peak + total.log() - math.log(5 * 4)


def _brackets(rho: Tensor, phi: Tensor, offset: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(point, target, low, high): each root of h(psi) = psi - 0.25 exp(rho cos psi) = target,
    target = phi + 2pi k/5 + 2pi m, bracketed by [low, high] for point ``offset + point``.

    The roots of all five arms are where h - phi crosses a multiple of 2pi/5, and h gains
    exactly 2pi over [-pi, pi] (at least one root per arm). Counting the multiples passed on a
    dense psi grid brackets each root with its level. Exact while h changes by less than
    2pi/5 per grid cell, i.e. for |x| < 12 (beyond: log p < -100, and folds with several
    roots in one cell give a lower bound).
    """
    psi = torch.linspace(-math.pi, math.pi, _PSI_GRID + 1, dtype=_F64)
    unit = _TAU / 5
    levels = torch.outer(rho, psi.cos()).exp_().mul_(-0.25 / unit)  # (h - phi) / unit, in place
    levels.add_(psi / unit).sub_(phi[:, None] / unit).floor_()
    point, cell = torch.nonzero(levels[:, 1:] != levels[:, :-1], as_tuple=True)
    level = torch.maximum(levels[point, cell], levels[point, cell + 1])
    return point + offset, phi[point] + _TAU / 5 * level, psi[cell], psi[cell + 1]


def _bisect(fn: Callable[[Tensor], Tensor], low: Tensor, high: Tensor, steps: int = 48) -> Tensor:
    """Elementwise roots of ``fn`` in brackets [low, high] where it changes sign."""
    low_positive = fn(low) > 0
    for _ in range(steps):
        mid = (low + high) / 2
        same = (fn(mid) > 0) == low_positive
        low, high = torch.where(same, mid, low), torch.where(same, high, mid)
    return (low + high) / 2


_CIRCLE_RADII = (1.0, 0.5)  # before the final factor 3
_RING_RADII = (3.0, 2.25, 1.5, 0.75)
_PSI_GRID = 1024  # psi cells per turn: h changes by < 2pi/5 per cell up to |x| ~ 12
_NODES_PER_STD = 8  # quadrature nodes per noise std along a curve (8 per Gauss-Legendre panel)

_SAMPLERS: dict[str, Callable[[int, torch.Generator], Tensor]] = {
    "8gaussians": _eight_gaussians,
    "2spirals": _two_spirals,
    "checkerboard": _checkerboard,
    "circles": _circles,
    "moons": _moons,
    "pinwheel": _pinwheel,
    "rings": _rings,
    "swissroll": _swissroll,
}
_DENSITIES: dict[str, Callable[[Tensor], Tensor]] = {
    "8gaussians": _eight_gaussians_density,
    "2spirals": _two_spirals_density,
    "checkerboard": _checkerboard_density,
    "circles": lambda x: _circles_density(x, (3.0, 1.5), 0.24),
    "moons": _moons_density,
    "pinwheel": _pinwheel_density,
    "rings": lambda x: _circles_density(x, _RING_RADII, 0.08),
    "swissroll": _swissroll_density,
}
