"""Every random generator a run draws from, captured into and restored from its checkpoint.

A resumed run continues with exactly the numbers it would have drawn uninterrupted only if every
generator it uses is restored: Python's and NumPy's (kept for any library that draws from them),
torch's CPU generator (initialisation, Hutchinson probes, which are drawn on the CPU on every
device: see ``flows/augmented.py``), the run's private minibatch generator, and the generator of
each accelerator in use (CUDA or MPS: anything a kernel or library draws on the device).
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class _Accelerator:
    """How to read and set one accelerator family's generator states."""

    in_use: Callable[[], bool]
    get: Callable[[], object]
    set: Callable[[object], None]


def _cuda_in_use() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_initialized()


def _mps_in_use() -> bool:
    return torch.backends.mps.is_available()


# Looked up at call time, so that tests can stand in for a GPU on a CPU-only machine.
ACCELERATORS: dict[str, _Accelerator] = {
    "cuda": _Accelerator(
        _cuda_in_use,
        lambda: torch.cuda.get_rng_state_all(),
        lambda states: torch.cuda.set_rng_state_all(states),
    ),
    "mps": _Accelerator(
        _mps_in_use,
        lambda: torch.mps.get_rng_state(),
        lambda state: torch.mps.set_rng_state(state),
    ),
}


def capture(batches: torch.Generator) -> dict:
    """The state of every generator the run uses, ``batches`` being its minibatch generator."""
    states = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "batches": batches.get_state(),
    }
    for name, accelerator in ACCELERATORS.items():
        if accelerator.in_use():
            states[name] = accelerator.get()
    return states


def restore(states: dict, batches: torch.Generator) -> None:
    """Set every generator back to ``states`` (from :func:`capture`). An accelerator's state
    that cannot be restored here (checkpoint written on a GPU, resumed without one) is named in
    a warning: the run continues, but not with the numbers of an uninterrupted run."""
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    batches.set_state(states["batches"])
    for name, accelerator in ACCELERATORS.items():
        if name not in states:
            continue
        try:
            accelerator.set(states[name])
        except (RuntimeError, AssertionError) as error:  # no such device, or fewer of them
            print(
                f"warning: the checkpoint's {name} generator state cannot be restored here "
                f"({error}); the resumed run will not be bit-identical to an uninterrupted one",
                file=sys.stderr,
            )
