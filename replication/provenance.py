"""Where a number came from: code version, libraries and hardware, recorded with every result."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

from replication import precision

_PACKAGES = ("torch", "torchdiffeq", "torchvision", "numpy")


# The pipeline's outputs, some of them committed (the default profile's metrics and report):
# a run rewrites them, so they say nothing about whether the code differs from the commit.
OUTPUT_FOLDERS = ("results", "report")


def git_commit(root: Path | None = None) -> dict:
    """The commit of the checkout this package runs from (or of ``root``), and whether its
    tracked files outside :data:`OUTPUT_FOLDERS` had local changes."""
    root = root or Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            result = subprocess.run(
                ["git", *args], check=False, cwd=root, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return result.stdout.strip() if result.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    outputs = [f":(exclude,top){folder}" for folder in OUTPUT_FOLDERS]
    status = (
        git("status", "--porcelain", "--untracked-files=no", "--", ":/", *outputs)
        if commit
        else None
    )
    return {"commit": commit or "unknown", "dirty": bool(status) if status is not None else None}


def versions() -> dict:
    """Versions of Python and of the libraries that affect the numbers."""
    found = {"python": platform.python_version()}
    for package in _PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def resolve_device(requested: str) -> torch.device:
    """``auto`` means the first CUDA device when one is present, else the CPU."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        from replication.typed import ConfigError

        raise ConfigError(f"device {requested!r} was asked for but CUDA is not available")
    return device


def describe_device(device: torch.device) -> dict:
    """The device a run used, with the GPU's name or the CPU's architecture."""
    if device.type == "cuda":
        return {
            "type": "cuda",
            "name": torch.cuda.get_device_name(device),
            "capability": ".".join(map(str, torch.cuda.get_device_capability(device))),
            "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),  # the job's GPU slot
        }
    return {"type": device.type, "name": platform.processor() or platform.machine()}


def record(device: torch.device) -> dict:
    """Everything a metrics file records about where and with what it was computed."""
    return {
        **git_commit(),
        "device": describe_device(device),
        "precision": precision.record(device),
        "versions": versions(),
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),
    }
