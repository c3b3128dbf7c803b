"""Reference replication suite for normalizing flows.

The public Python entry point is :func:`load_run` (see ``replication/runs.py``): a trained run
with ``log_prob``, ``sample`` and a differentiable ``rsample``. It is imported on first use, so
the command line's light commands do not pay for torch and the model code.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Run", "load_run"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from replication import runs

        return getattr(runs, name)
    raise AttributeError(f"module 'replication' has no attribute {name!r}")
