"""MNIST loading: checksums, splits, downsampling, dequantization, reproducible evaluation.

Uses the shared raw files (skipped where they are absent). Roots with damaged files are built
in a temporary folder from symbolic links to the good files plus modified copies of a small
one; the shared data is never touched.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch

from replication import config
from replication.datasets import load as load_dataset
from replication.datasets.mnist import (
    SHA256,
    MnistDataset,
    MnistOptions,
    dequantize,
    downsample,
    verify_raw_files,
)
from replication.typed import ConfigError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
RAW = SHARED / "MNIST" / "raw"
needs_data = pytest.mark.skipif(
    not all((RAW / name).is_file() for name in SHA256), reason="shared MNIST files not present"
)


@pytest.fixture(scope="module")
def small() -> MnistDataset:
    """14x14 MNIST with subsets, noisy evaluation with 2 draws per image."""
    options = MnistOptions(
        root=str(SHARED), val_size=500, train_subset=2000, test_subset=300, image_size=14,
        eval_noise_draws=2,
    )  # fmt: skip
    return MnistDataset.load(options, seed=0)


@pytest.fixture(scope="module")
def full_train_images() -> torch.Tensor:
    from torchvision.datasets import MNIST

    return MNIST(str(SHARED), train=True).data


def linked_root(tmp_path: Path) -> Path:
    """A root whose raw files are links to the shared ones."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in SHA256:
        (raw / name).symlink_to(RAW / name)
    return tmp_path


def replace_with_copy(root: Path, name: str) -> Path:
    path = root / "MNIST" / "raw" / name
    path.unlink()
    shutil.copyfile(RAW / name, path)
    return path


@needs_data
def test_checksums_of_the_shared_files_are_verified(tmp_path):
    assert verify_raw_files(linked_root(tmp_path)) == SHA256


@needs_data
@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "delete"])
def test_a_damaged_file_is_refused_naming_path_checksum_and_remedy(tmp_path, damage):
    root = linked_root(tmp_path)
    name = "t10k-labels-idx1-ubyte"
    path = replace_with_copy(root, name)
    if damage == "flip a byte":
        data = bytearray(path.read_bytes())
        data[100] ^= 1
        path.write_bytes(bytes(data))
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[:5000])
    else:
        path.unlink()
    with pytest.raises(ConfigError) as caught:
        MnistDataset.load(MnistOptions(root=str(root)), seed=0)
    message = str(caught.value)
    assert str(path) in message and SHA256[name] in message
    assert "data.mnist.download: true" in message and "copy" in message
    assert ("missing" if damage == "delete" else "corrupted") in message


@needs_data
@pytest.mark.slow
def test_download_option_uses_present_verified_files_without_network(tmp_path):
    data = MnistDataset.load(MnistOptions(root=str(linked_root(tmp_path)), download=True), 0)
    assert data.size("train") == 50_000 and data.size("test") == 10_000


@needs_data
def test_validation_is_the_last_training_images(small, full_train_images):
    train, val = small.splits["train"], small.splits["val"]
    assert val.shape == (500, 1, 14, 14) and train.shape == (2000, 1, 14, 14)
    expected = downsample(full_train_images[-500:], 14)
    assert torch.equal(val[:, 0], expected)
    assert torch.equal(train[:, 0], downsample(full_train_images[:2000], 14))
    assert small.size("test") == 300 and small.shape == (1, 14, 14)


@needs_data
def test_full_size_splits_and_dtype(full_train_images):
    data = MnistDataset.load(MnistOptions(root=str(SHARED), val_size=10_000), seed=0)
    assert {split: data.size(split) for split in ("train", "val", "test")} == {
        "train": 50_000, "val": 10_000, "test": 10_000,
    }  # fmt: skip
    assert all(images.dtype == torch.uint8 for images in data.splits.values())
    assert torch.equal(data.splits["val"][:, 0], full_train_images[50_000:])


def test_downsampling_averages_blocks_and_keeps_integer_levels():
    images = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
    for size in (14, 7):
        small = downsample(images, size)
        factor = 28 // size
        assert small.dtype == torch.uint8 and small.shape == (5, size, size)
        block = images[2, factor : 2 * factor, :factor].double().mean()
        assert small[2, 1, 0].item() == torch.round(block).item()
    assert torch.equal(downsample(images, 28), images)
    assert downsample(torch.full((1, 28, 28), 255, dtype=torch.uint8), 7).unique().tolist() == [255]


@needs_data
def test_dequantized_values_lie_in_the_unit_interval_and_floor_to_the_pixels(small):
    batch = small.train_batch(256, torch.Generator().manual_seed(0))
    assert batch.dtype == torch.float32 and batch.shape == (256, 1, 14, 14)
    assert batch.min() >= 0 and batch.max() < 1
    levels = torch.floor(batch * 256)
    assert torch.equal(levels, levels.round()) and levels.max() <= 255
    first = next(small.eval_batches("test", 10))
    assert torch.equal(torch.floor(first * 256).to(torch.uint8), small.splits["test"][:10])


@needs_data
def test_evaluation_noise_is_reproducible_and_draws_repeat_each_batch(small):
    assert small.eval_draws == 2
    once, again = list(small.eval_batches("test", 128)), list(small.eval_batches("test", 128))
    assert len(once) == 2 * 3  # 300 images in 3 batches, each yielded twice
    assert all(torch.equal(a, b) for a, b in zip(once, again, strict=True))
    # Two draws of a batch: the same pixels under different noise.
    assert torch.equal(torch.floor(once[0] * 256), torch.floor(once[1] * 256))
    assert not torch.equal(once[0], once[1])
    assert small.eval_seed("val") != small.eval_seed("test")
    reloaded = load_dataset(config.DataConfig(name="mnist", mnist=small.options), seed=0)
    assert torch.equal(next(reloaded.eval_batches("test", 128)), once[0])


@needs_data
def test_bin_centres_evaluation(tmp_path):
    options = MnistOptions(root=str(SHARED), test_subset=50, eval_dequantization="centres")
    data = MnistDataset.load(options, seed=0)
    (batch,) = list(data.eval_batches("test", 64))
    assert data.eval_draws == 1
    assert torch.equal(batch, dequantize(data.splits["test"], None))
    assert torch.equal(batch * 256 - 0.5, data.splits["test"].float())


@needs_data
def test_describe_records_every_choice(small):
    described = small.describe()
    assert described["checksums_verified"]["files"] == SHA256
    assert described["sizes"] == {"train": 2000, "val": 500, "test": 300}
    assert described["image_size"] == 14 and "average pooling 2x" in described["downsampling"]
    assert described["eval_dequantization"] == "noise" and described["eval_noise_draws"] == 2
    assert described["root"] == str(SHARED.resolve())  # the real folder, links followed
    assert described["validation"].startswith("last 500")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"image_size": 5}, "image_size must divide 28"),
        ({"image_size": 0}, "image_size must divide 28"),
        ({"val_size": 60_000}, "val_size must lie in"),
        ({"val_size": 0}, "val_size must lie in"),
        ({"train_subset": 0}, "train_subset must lie in"),
        ({"val_size": 10_000, "train_subset": 50_001}, "train_subset must lie in"),
        ({"test_subset": 10_001}, "test_subset must lie in"),
        ({"eval_noise_draws": 0}, "eval_noise_draws must be at least 1"),
        ({"eval_dequantization": "midpoint"}, "valid choices: centres, noise"),
    ],
)
def test_invalid_options_are_config_errors(options, message):
    raw = {"model": {"method": "nice"}, "data": {"name": "mnist", "mnist": options}}
    with pytest.raises(ConfigError, match=message):
        config.parse(raw)


@needs_data
def test_a_short_image_run_writes_bits_per_dim_and_a_sample_grid(tmp_path):
    from PIL import Image

    from replication import train

    experiment = config.parse({
        "data": {"name": "mnist", "mnist": {
            "root": str(SHARED), "image_size": 14, "train_subset": 500, "val_size": 100,
            "test_subset": 100,
        }},
        "model": {"method": "nice", "couplings": 2, "hidden": [32]},
        "train": {"batch_size": 50, "iterations": 20, "eval_every": 10},
        "eval": {"batch_size": 100, "sample_count": 4},
    })  # fmt: skip
    metrics = train.run(experiment, tmp_path, progress=False)
    assert metrics["status"] == "ok" and metrics["test_count"] == 100
    # test_nll is in nats per image of [0, 1] pixels; bits/dim counts the 256 levels per pixel
    expected = (metrics["test_nll"] + 196 * math.log(256)) / (196 * math.log(2))
    assert metrics["test_bpd"] == pytest.approx(expected)
    with Image.open(tmp_path / "samples.png") as grid:  # 64 samples, 8 x 8 with 2px padding
        assert grid.size == (8 * 14 + 9 * 2, 8 * 14 + 9 * 2)
