"""One GPU per GPU job: a machine-wide slot lock that sets ``CUDA_VISIBLE_DEVICES``.

Snakemake counts GPUs (``resources: gpu=1`` against ``--resources gpu=N``) but never says which
GPU a job should use, so with N GPUs every job would run on the first one. A training job that
asks for ``--gpus K`` therefore claims K free GPUs here before CUDA starts: each GPU has a lock
file, a job holds an exclusive ``flock`` on the ones it uses for as long as its process lives
(the kernel releases it when the process ends, however it ends), and the job sees only its own
GPUs. When a scheduler has already narrowed ``CUDA_VISIBLE_DEVICES`` to exactly K devices (SLURM
does), that choice is kept as it is.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

ENV = "CUDA_VISIBLE_DEVICES"
LOCK_DIR_ENV = "REPLICATION_GPU_LOCKS"  # where the lock files live (default: a temp folder)
_held: list[IO] = []  # open lock files of this process: closing one would release its GPU


def visible_gpus() -> list[str]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` when set, else every GPU that
    ``nvidia-smi`` lists (asked without starting CUDA, so the choice can still be narrowed)."""
    if ENV in os.environ:
        return [entry.strip() for entry in os.environ[ENV].split(",") if entry.strip()]
    if shutil.which("nvidia-smi") is None:
        return []
    listing = subprocess.run(
        ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    return listing.stdout.split() if listing.returncode == 0 else []


def lock_dir() -> Path:
    folder = Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / "replication-gpus")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _try_lock(gpu: str) -> IO | None:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", gpu)  # indices, or UUIDs (MIG ones hold slashes)
    handle = open(lock_dir() / f"gpu-{safe}.lock", "a")  # noqa: SIM115 (held open on purpose)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def claim(count: int, poll_seconds: float = 5.0) -> list[str]:
    """Claim ``count`` GPUs for this process and narrow ``CUDA_VISIBLE_DEVICES`` to them; waits
    while every GPU is held by other jobs. Returns the GPUs, or [] for ``count`` 0 or none here.
    Must run before CUDA is initialised (CUDA reads the variable once)."""
    gpus = visible_gpus()
    if count <= 0 or not gpus:
        return []
    if len(gpus) <= count:  # nothing to choose: all of them (a scheduler may have narrowed it)
        return gpus
    announced = False
    while True:
        handles, mine = [], []
        for gpu in gpus:
            if len(mine) < count and (handle := _try_lock(gpu)) is not None:
                handles.append(handle)
                mine.append(gpu)
        if len(mine) == count:
            _held.extend(handles)
            os.environ[ENV] = ",".join(mine)
            return mine
        for handle in handles:  # never sit on part of a claim while waiting for the rest
            handle.close()
        if not announced:
            print(f"waiting for {count} free GPU(s) of {', '.join(gpus)} ...", file=sys.stderr)
            announced = True
        time.sleep(poll_seconds)


def release() -> None:
    """Give back every GPU this process claimed (the process's end does the same)."""
    while _held:
        _held.pop().close()
