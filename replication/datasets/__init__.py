"""Datasets: the toy 2D densities and MNIST, behind one :class:`~.splits.Dataset` interface."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from replication.datasets.options import DataConfig
    from replication.datasets.splits import Dataset


def load(config: DataConfig, seed: int) -> Dataset:
    """The train / validation / test splits the config asks for, drawn from the run's seed."""
    from replication.datasets.splits import ToyDataset

    if config.name == "mnist":
        from replication.datasets.mnist import MnistDataset

        return MnistDataset.load(config.mnist, seed)
    if config.train_draws == "fresh":  # no fixed training set: drawn anew every iteration
        sizes = {"val": config.val_size, "test": config.test_size}
    else:
        sizes = {"train": config.train_size, "val": config.val_size, "test": config.test_size}
    return ToyDataset.draw(config.name, sizes, seed)


def check_files(config: DataConfig) -> None:
    """ConfigError now, before anything is written, if the data's files are missing or damaged
    (MNIST's raw files; toy data is drawn, not read). A download is left to the loader."""
    if config.name == "mnist" and not config.mnist.download:
        from pathlib import Path

        from replication.datasets.mnist import verify_raw_files

        verify_raw_files(Path(config.mnist.root).expanduser().resolve())
