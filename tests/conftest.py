"""Shared fixtures: every test runs single-threaded and seeded, in float64 where it asks."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
