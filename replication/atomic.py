"""Writes that are never seen half-done: write a temporary file beside the target, then rename.

A rename within one directory is atomic on POSIX, so an interrupted run leaves either the old
file or the new one, never a truncated mix. The file gets the mode a plain ``open`` would give
it (0666 less the process umask), not the temporary file's private 0600, so that group members
on a shared file system can read the results.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch


def write_with(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(file)`` on a temporary file and move it to ``path`` when it succeeded."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(handle, 0o666 & ~_umask())
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process umask; reading it means setting it, so set it straight back."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> None:
    write_with(path, lambda file: file.write(text.encode()))


def write_json(path: str | Path, data: Any) -> None:
    """JSON with sorted keys and a final newline, so identical data gives identical bytes."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True, allow_nan=True) + "\n")


def save_torch(path: str | Path, obj: Any) -> None:
    write_with(path, lambda file: torch.save(obj, file))
