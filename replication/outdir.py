"""The output folder of one training run: checked before any work, held by one run at a time.

- :func:`check_out` refuses, before anything is built or loaded, an ``--out`` that is a file,
  lies under a file, or sits in a folder that cannot be written.
- :func:`hold` takes a per-folder lock (``OUT/.lock``) so that a second run on the same folder
  stops at once, naming the run that holds it. The lock is an ``fcntl.flock``, which the kernel
  releases when its process dies: a run killed with ``kill -9`` never blocks the next one.
- :func:`refuse_other_finished` keeps a finished run of another configuration from being
  overwritten silently.
- :func:`remove_stale_temporaries` deletes what an interrupted atomic write left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from replication.typed import ConfigError

LOCK = ".lock"
# The finished run's files; a checkpoint of another configuration is ignored by resume anyway.
RESULTS = ("metrics.json", "model.pt", "samples.png")


def check_out(out: Path, option: str = "--out", folder: bool = True) -> None:
    """ConfigError unless ``out`` is a folder (or, with ``folder=False``, a file) that exists or
    can be created; ``option`` names the command-line option in the message."""
    if folder and out.exists() and not out.is_dir():
        raise ConfigError(f"{option} {out} is a file, not a folder")
    if not folder and out.is_dir():
        raise ConfigError(f"{option} {out} is a folder, not a file")
    if out.is_symlink() and not out.exists():
        raise ConfigError(f"{option} {out} is a broken symbolic link")
    ancestor = out.absolute() if folder else out.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(f"{option} {out} lies under {ancestor}, which is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {out} cannot be created or written: {ancestor} is read-only")


def _holder(path: Path) -> str:
    try:
        holder = json.loads(path.read_text())
        return f"process {holder['pid']} on {holder['host']} (started {holder['started']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextlib.contextmanager
def hold(out: Path) -> Iterator[None]:
    """Hold ``out`` for this run: ConfigError at once if another live run holds it.

    A folder this call creates is removed again when the run stops with a ConfigError before
    writing anything into it, so refused input leaves nothing behind.
    """
    created = [folder for folder in (out, *out.absolute().parents) if not folder.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"--out {out} cannot be created: {error.strerror}") from None
    path = out / LOCK
    handle = _lock(path)
    refused = False
    try:
        yield
    except ConfigError:
        refused = True
        raise
    finally:
        _release(handle, path)
        for folder in created if refused else ():
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty


def _lock(path: Path) -> int:
    """Open and flock ``path``; retry when a releasing holder unlinked it under us."""
    while True:
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            raise ConfigError(
                f"--out {path.parent} is in use by {_holder(path)}; wait for it to finish or "
                "choose another --out"
            ) from None
        # The holder we waited for may have unlinked the file before we locked it: then our
        # lock guards nothing, and the path must be locked afresh.
        try:
            same = os.stat(path).st_ino == os.fstat(handle).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(handle)
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.ctime()}
    os.ftruncate(handle, 0)
    os.write(handle, json.dumps(holder).encode())
    return handle


def _release(handle: int, path: Path) -> None:
    # Unlink while still holding the lock, so no other run ever locks a file about to vanish.
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    os.close(handle)


def refuse_other_finished(out: Path, digest: str, overwrite: bool) -> None:
    """ConfigError if ``out`` holds a finished run of a configuration other than ``digest``;
    with ``overwrite``, that run's results are deleted instead."""
    metrics = out / RESULTS[0]
    if not metrics.exists():
        return
    try:
        found = json.loads(metrics.read_text()).get("config_digest")
    except (OSError, ValueError, AttributeError):
        found = "unreadable"
    if found == digest:
        return  # the same run again: it retrains and writes the same numbers
    if not overwrite:
        raise ConfigError(
            f"--out {out} holds a finished run of another configuration (config digest "
            f"{found}, this one {digest}); pass --overwrite to replace it, or choose another --out"
        )
    for name in RESULTS:
        (out / name).unlink(missing_ok=True)
    print(f"--overwrite: removed the results of config {found} from {out}", file=sys.stderr)


def remove_stale_temporaries(out: Path) -> list[Path]:
    """Delete ``.NAME.*.tmp`` files an interrupted atomic write left (see :mod:`atomic`); safe
    only while this run holds the folder."""
    stale = sorted(out.glob(".*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
        print(f"removed {path}, left by an interrupted write", file=sys.stderr)
    return stale
