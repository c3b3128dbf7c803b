"""The ``data`` section of an experiment config: which dataset, and the sizes of its splits.

It lives with the datasets, below :mod:`replication.config`, which reads it into a run's config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from replication.datasets import gaussian, toy2d
from replication.datasets.mnist import MnistOptions
from replication.typed import ConfigError, PositiveInt, choice_error

# FFJORD's eight toy densities, the analytic checks' Gaussian, and MNIST.
DATASETS: tuple[str, ...] = (*toy2d.NAMES, gaussian.NAME, "mnist")


@dataclass(frozen=True)
class DataConfig:
    name: str = "8gaussians"
    # Toy 2D split sizes (MNIST has its own splits, set under ``mnist``).
    train_size: PositiveInt = 100_000
    # Toy 2D training data: "fixed", minibatches from one draw of train_size points; "fresh",
    # a new draw from the generator every iteration, as FFJORD's toy experiments train (then
    # train_size is unused). Validation and test are fixed draws either way.
    train_draws: Literal["fixed", "fresh"] = "fixed"
    val_size: PositiveInt = 10_000
    test_size: PositiveInt = 20_000
    mnist: MnistOptions = field(default_factory=MnistOptions)

    def __post_init__(self) -> None:
        if self.name not in DATASETS:
            raise ConfigError(f"data.name: {choice_error('dataset', self.name, DATASETS)}")
        if self.name == "mnist" and self.train_draws == "fresh":
            raise ConfigError("data.train_draws: 'fresh' applies to the toy densities, not mnist")

    @property
    def shape(self) -> tuple[int, ...]:
        if self.name == "mnist":
            return (1, self.mnist.image_size, self.mnist.image_size)
        return (2,)
