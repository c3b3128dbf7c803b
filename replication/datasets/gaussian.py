"""A correlated 2D Gaussian: the one toy density whose entropy is known in closed form,

    H = 1/2 log det(2 pi e Sigma),

used by the analytic checks (every method trained on it must reach H).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

NAME = "gaussian"
MEAN = (0.5, -1.0)
COVARIANCE = ((2.0, 1.2), (1.2, 1.0))  # correlation 0.85


def _distribution() -> torch.distributions.MultivariateNormal:
    return torch.distributions.MultivariateNormal(
        torch.tensor(MEAN, dtype=torch.float64),
        covariance_matrix=torch.tensor(COVARIANCE, dtype=torch.float64),
    )


def sample(n: int, seed: int) -> Tensor:
    """(n, 2) float32 draws from a private generator (global RNG state untouched)."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, 2, generator=generator, dtype=torch.float64)
    cholesky = torch.linalg.cholesky(torch.tensor(COVARIANCE, dtype=torch.float64))
    return (torch.tensor(MEAN, dtype=torch.float64) + noise @ cholesky.T).float()


def log_density(x: Tensor) -> Tensor:
    return _distribution().log_prob(x.double())


def entropy() -> float:
    """1/2 log det(2 pi e Sigma), exactly."""
    covariance = torch.tensor(COVARIANCE, dtype=torch.float64)
    return 0.5 * math.log(torch.linalg.det(2 * math.pi * math.e * covariance).item())
