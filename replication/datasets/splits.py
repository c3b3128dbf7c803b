"""Datasets as the training loop sees them: fixed train / validation / test splits.

Each split is drawn once, from its own seed derived from the run's seed, so the three never
overlap in randomness and the same run seed always gives the same data. The test split is only
used for the final evaluation; model selection uses the validation split.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from replication.datasets import gaussian, toy2d

Split = Literal["train", "val", "test"]


def derive_seed(seed: int, purpose: str) -> int:
    """A seed for ``purpose`` (e.g. a data split) that depends only on the run seed.

    Hashing instead of ``seed + k`` keeps the streams of nearby run seeds unrelated.
    """
    digest = hashlib.sha256(f"{seed}/{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (2**63)


class Dataset(ABC):
    """Batches of continuous-valued data of shape ``[batch, *shape]``."""

    shape: tuple[int, ...]
    eval_draws: int = 1  # eval_batches yields each batch this many times (see evaluate.score)

    @abstractmethod
    def train_batch(self, batch_size: int, generator: torch.Generator) -> Tensor:
        """A random training minibatch, drawn with ``generator``."""

    @abstractmethod
    def eval_batches(self, split: Split, batch_size: int) -> Iterator[Tensor]:
        """The whole ``val`` or ``test`` split, in order, in batches."""

    @abstractmethod
    def size(self, split: Split) -> int:
        """Number of examples in ``split``."""

    @abstractmethod
    def describe(self) -> dict:
        """What the metrics file records about the data (sizes, seeds, preprocessing)."""


def sample(name: str, n: int, seed: int) -> Tensor:
    """Draws from a toy density: FFJORD's eight, or the analytic checks' Gaussian."""
    return gaussian.sample(n, seed) if name == gaussian.NAME else toy2d.sample(name, n, seed)


def log_density(name: str, x: Tensor) -> Tensor:
    """The exact log-density of a toy density (float64)."""
    return gaussian.log_density(x) if name == gaussian.NAME else toy2d.log_density(name, x)


@dataclass(frozen=True)
class ToyDataset(Dataset):
    """A toy 2D density with fixed draws for each split (see :mod:`replication.datasets.toy2d`)."""

    name: str
    seeds: dict[str, int]
    splits: dict[str, Tensor]
    shape: tuple[int, ...] = (2,)

    @classmethod
    def draw(cls, name: str, sizes: dict[str, int], seed: int) -> ToyDataset:
        seeds = {split: derive_seed(seed, f"{name}/{split}") for split in sizes}
        splits = {split: sample(name, n, seeds[split]) for split, n in sizes.items()}
        return cls(name, seeds, splits)

    def train_batch(self, batch_size: int, generator: torch.Generator) -> Tensor:
        if "train" not in self.splits:  # fresh draws: a new seed from the run's batch stream
            seed = int(torch.randint(2**62, (1,), generator=generator))
            return sample(self.name, batch_size, seed)
        train = self.splits["train"]
        index = torch.randint(len(train), (batch_size,), generator=generator)
        return train[index]

    def eval_batches(self, split: Split, batch_size: int) -> Iterator[Tensor]:
        yield from self.splits[split].split(batch_size)

    def size(self, split: Split) -> int:
        return len(self.splits[split])

    def describe(self) -> dict:
        sizes = {split: len(values) for split, values in self.splits.items()}
        described = {"name": self.name, "kind": "toy2d", "sizes": sizes, "seeds": self.seeds}
        if "train" not in self.splits:
            described["train"] = "fresh draws from the generator every iteration"
        return described
