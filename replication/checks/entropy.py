"""The entropy of each toy density: the best test NLL any model can reach.

H = -E[log p(X)] is estimated by Monte Carlo with the generator's exact (or quadrature-accurate)
density, with its standard error; it is checked against an independent value, the grid
quadrature -sum p log p dA on [-7, 7]^2 (exactly log 32 for the checkerboard, which is uniform
on an area of 32). The tolerance is Z = 3.29 standard errors (false-alarm rate 1e-3) plus the
grid's own error, estimated as the change between a grid and one of half the resolution.
"""

from __future__ import annotations

import math

import torch

from replication.checks.records import Check, close
from replication.datasets import toy2d

Z_CRITICAL = 3.29
HALF_WIDTH = 7.0
FLOOR = 1e-9  # float64 round-off of the sums themselves
EXACT = {"checkerboard": math.log(32.0)}


def grid_entropy(name: str, points: int) -> float:
    """-sum p log p dA over a ``points`` x ``points`` midpoint grid on [-7, 7]^2."""
    step = 2 * HALF_WIDTH / points
    axis = torch.arange(points, dtype=torch.float64) * step - HALF_WIDTH + step / 2
    grid = torch.cartesian_prod(axis, axis)
    log_p = torch.cat([toy2d.log_density(name, chunk) for chunk in grid.split(50_000)])
    terms = torch.where(torch.isfinite(log_p), -log_p.exp() * log_p, torch.zeros_like(log_p))
    return terms.sum().item() * step * step


def toy_entropy(name: str, samples: int = 200_000, grid: int = 400) -> Check:
    """Monte-Carlo entropy of toy density ``name`` (reported with its standard error)."""
    estimate, error = toy2d.entropy(name, n=samples)
    if name in EXACT:
        expected, grid_error, source = EXACT[name], 0.0, "exact: uniform on area 32"
    else:
        expected = grid_entropy(name, grid)
        grid_error = abs(expected - grid_entropy(name, grid // 2))
        source = f"grid quadrature, {grid}^2 on [-7, 7]^2"
    return close(
        f"toy_entropy/{name}", f"H = -E log p(X), Monte Carlo (n = {samples:,}) with the exact "
        f"density; expected: {source}", expected, estimate,
        Z_CRITICAL * error + grid_error + FLOOR, error,
    )  # fmt: skip
