"""Shared fixtures: every test runs single-threaded and seeded, in float64 where it asks."""

from __future__ import annotations

import os

import pytest
import torch

# The device of the device-agnostic tests (marker ``device``): ``python -m replication
# gpu-check`` runs them once per available device with this variable set; plain pytest uses the
# CPU. Kept in step with replication/gpu_check.py (a test checks the name).
DEVICE_ENV = "REPLICATION_TEST_DEVICE"


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)


@pytest.fixture
def device() -> torch.device:
    """The device the device-agnostic tests run on: $REPLICATION_TEST_DEVICE, else the CPU."""
    return torch.device(os.environ.get(DEVICE_ENV, "cpu"))
