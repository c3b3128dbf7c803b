"""MNIST (LeCun, Cortes and Burges; CC BY-SA 3.0): checksummed raw files, splits, dequantization.

The four raw IDX files under ``<root>/MNIST/raw/`` are checked against their sha256 before use
and read through ``torchvision.datasets.MNIST``. Splits:

- validation: the last ``val_size`` of the 60,000 training images (never the test split);
- training: the images before them, optionally only the first ``train_subset``;
- test: the 10,000 test images, optionally only the first ``test_subset``.

Images stay 8-bit (``uint8``) in memory; optional downsampling to ``image_size`` 14 or 7
averages f x f blocks and rounds back to the integers 0..255, so bits/dim keeps its meaning on
D = image_size^2. A pixel k in {0..255} becomes a value in [0, 1) by uniform dequantization,
x = (k + u) / 256, u ~ U(0, 1) (Theis et al. 2016), so the flow's log-density on [0, 1]^D gives
bpd = -(log p(x) / D - ln 256) / ln 2 (:func:`replication.evaluate.bits_per_dim`).
Evaluation uses either fresh noise from a seed fixed per split (FFJORD's protocol, reproducible
here) with ``eval_noise_draws`` draws per image, or bin centres (k + 0.5) / 256 (RNODE's).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from replication.datasets.splits import Dataset, Split, derive_seed
from replication.typed import ConfigError

FULL_SIZE = 28
TRAIN_IMAGES, TEST_IMAGES = 60_000, 10_000

# sha256 of the raw files (../shared/data/README.md; the files torchvision downloads).
SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

_HOW_TO_FETCH = (
    "fetch MNIST by setting data.mnist.download: true on a machine with internet "
    "(torchvision's download), or copy the four raw IDX files ({files}) into {folder}"
)


@dataclass(frozen=True)
class MnistOptions:
    """How MNIST is read, split and dequantized; every choice is recorded in the metrics."""

    root: str = "../shared/data"  # folder holding MNIST/raw/ (torchvision's layout)
    download: bool = False  # fetch with torchvision when files are missing (needs internet)
    val_size: int = 10_000  # validation = the last val_size training images
    train_subset: int | None = None  # use only the first N remaining training images
    test_subset: int | None = None  # evaluate on the first N test images only
    image_size: int = 28  # 28, or 14 / 7 by average pooling (re-quantized to 8 bits)
    eval_dequantization: Literal["noise", "centres"] = "noise"
    eval_noise_draws: int = 1  # dequantization draws per test image with "noise"

    def __post_init__(self) -> None:
        problems = {
            f"data.mnist.image_size must divide {FULL_SIZE} (28, 14 or 7), "
            f"got {self.image_size}": self.image_size < 1 or FULL_SIZE % self.image_size,
            f"data.mnist.val_size must lie in [1, {TRAIN_IMAGES - 1}], got {self.val_size}": not (
                1 <= self.val_size < TRAIN_IMAGES
            ),
            f"data.mnist.train_subset must lie in [1, {TRAIN_IMAGES - self.val_size}] (the "
            f"training images left after validation), got {self.train_subset}": (
                self.train_subset is not None
                and not 1 <= self.train_subset <= TRAIN_IMAGES - self.val_size
            ),
            f"data.mnist.test_subset must lie in [1, {TEST_IMAGES}], got {self.test_subset}": (
                self.test_subset is not None and not 1 <= self.test_subset <= TEST_IMAGES
            ),
            f"data.mnist.eval_noise_draws must be at least 1, "
            f"got {self.eval_noise_draws}": self.eval_noise_draws < 1,
        }
        for problem, found in problems.items():
            if found:
                raise ConfigError(problem)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_raw_files(root: Path) -> dict[str, str]:
    """Check the four raw files under ``root/MNIST/raw``; their checksums, or ConfigError."""
    folder = root / "MNIST" / "raw"
    how = _HOW_TO_FETCH.format(files=", ".join(SHA256), folder=folder)
    for name, expected in SHA256.items():
        path = folder / name
        if not path.is_file():
            raise ConfigError(f"MNIST file {path} is missing (expected sha256 {expected}); {how}")
        found = sha256_of(path)
        if found != expected:
            raise ConfigError(
                f"MNIST file {path} is corrupted: sha256 {found}, expected {expected}; {how}"
            )
    legacy = folder.parent / "processed"
    if (legacy / "training.pt").exists() or (legacy / "test.pt").exists():
        # torchvision would read this old cache instead of the verified raw files.
        raise ConfigError(f"remove torchvision's legacy cache {legacy}: only raw files are checked")
    return dict(SHA256)


def downsample(images: Tensor, size: int, chunk: int = 10_000) -> Tensor:
    """Average-pool ``[N, H, W]`` uint8 images to ``size x size`` and round back to uint8
    (round half to even), chunk by chunk to keep memory modest."""
    factor = images.shape[-1] // size
    if factor == 1:
        return images
    parts = []
    for block in images.split(chunk):
        pooled = block.view(-1, size, factor, size, factor).to(torch.float32).mean((2, 4))
        parts.append(pooled.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(parts)


def dequantize(pixels: Tensor, noise: Tensor | None) -> Tensor:
    """``(k + u) / 256`` in float32, or bin centres ``(k + 0.5) / 256`` when ``noise`` is None."""
    values = pixels.to(torch.float32)
    return (values + (0.5 if noise is None else noise)) / 256


def _read(root: Path, train: bool, download: bool) -> Tensor:
    """The uint8 images ``[N, 28, 28]`` of one torchvision split."""
    from torchvision.datasets import MNIST

    try:
        return MNIST(str(root), train=train, download=download).data
    except RuntimeError as error:  # torchvision's "not found" or download failure
        raise ConfigError(f"torchvision could not load MNIST from {root}: {error}") from None


@dataclass(frozen=True)
class MnistDataset(Dataset):
    """MNIST splits as uint8 tensors ``[N, 1, s, s]``; batches come out dequantized, float32."""

    options: MnistOptions
    root: Path
    seed: int
    splits: dict[str, Tensor]
    checksums: dict[str, str]

    @classmethod
    def load(cls, options: MnistOptions, seed: int) -> MnistDataset:
        root = Path(options.root).expanduser().resolve()
        if options.download:
            _read(root, train=True, download=True)
            _read(root, train=False, download=True)
        checksums = verify_raw_files(root)
        train = downsample(_read(root, True, download=False), options.image_size)
        test = downsample(_read(root, False, download=False), options.image_size)
        cut = TRAIN_IMAGES - options.val_size
        splits = {
            "train": train[: options.train_subset or cut],
            "val": train[cut:],
            "test": test[: options.test_subset or TEST_IMAGES],
        }
        # Copies, so that a subset does not keep the whole 60,000-image tensor alive.
        splits = {name: images.unsqueeze(1).clone() for name, images in splits.items()}
        return cls(options, root, seed, splits, checksums)

    @property
    def shape(self) -> tuple[int, ...]:  # type: ignore[override]
        return (1, self.options.image_size, self.options.image_size)

    @property
    def eval_draws(self) -> int:  # type: ignore[override]
        noisy = self.options.eval_dequantization == "noise"
        return self.options.eval_noise_draws if noisy else 1

    def train_batch(self, batch_size: int, generator: torch.Generator) -> Tensor:
        train = self.splits["train"]
        index = torch.randint(len(train), (batch_size,), generator=generator)
        pixels = train[index]
        return dequantize(pixels, torch.rand(pixels.shape, generator=generator))

    def eval_batches(self, split: Split, batch_size: int) -> Iterator[Tensor]:
        """Each batch ``eval_draws`` times in a row (fresh noise each time) or once at bin
        centres. The noise comes from a seed fixed per split, so evaluation is reproducible."""
        generator = torch.Generator().manual_seed(self.eval_seed(split))
        for pixels in self.splits[split].split(batch_size):
            if self.options.eval_dequantization == "centres":
                yield dequantize(pixels, None)
                continue
            for _ in range(self.eval_draws):
                yield dequantize(pixels, torch.rand(pixels.shape, generator=generator))

    def eval_seed(self, split: Split) -> int:
        return derive_seed(self.seed, f"mnist/eval/{split}")

    def size(self, split: Split) -> int:
        return len(self.splits[split])

    def describe(self) -> dict:
        options = self.options
        noisy = options.eval_dequantization == "noise"
        factor = FULL_SIZE // options.image_size
        pooling = f"average pooling {factor}x, rounded to 0..255" if factor > 1 else "none"
        return {
            "name": "mnist",
            "kind": "image",
            "root": str(self.root),
            "shape": list(self.shape),
            "image_size": options.image_size,
            "downsampling": pooling,
            "sizes": {split: len(images) for split, images in self.splits.items()},
            "validation": f"last {options.val_size} of the {TRAIN_IMAGES} training images",
            "train_subset": options.train_subset,
            "test_subset": options.test_subset,
            "train_dequantization": "uniform noise (k + u) / 256",
            "eval_dequantization": "noise" if noisy else "bin centres (k + 0.5) / 256",
            "eval_noise_draws": options.eval_noise_draws if noisy else None,
            "eval_seeds": {s: self.eval_seed(s) for s in ("val", "test")} if noisy else None,
            "checksums_verified": {"algorithm": "sha256", "files": self.checksums},
        }
