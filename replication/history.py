"""What a training run has measured so far: the loop fills it, the metrics file and the
progress display read it, and checkpoints save it so a resumed run continues it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class History:
    """What the loop has measured so far; saved in checkpoints so a resumed run continues it."""

    iteration: int = 0
    best_val: float = math.inf
    best_iteration: int = 0
    val_curve: list[dict] = field(default_factory=list)
    iteration_seconds: list[float] = field(default_factory=list)
    validation_seconds: float = 0.0
    val_train_seconds: list[float] = field(default_factory=list)  # training time at each validation
    losses: list[float] = field(default_factory=list)
    nfe_forward: list[int] = field(default_factory=list)
    nfe_backward: list[int] = field(default_factory=list)
    kinetic: list[float] = field(default_factory=list)
    jacobian: list[float] = field(default_factory=list)
    status: str = "ok"
    counts_nfe: bool = False  # whether the flow has ODE blocks, i.e. NFE applies
    # Convergence (train.patience): the validation NLL at the last improvement larger than its
    # standard error, the iteration it happened, and why training stopped ("" while it runs).
    reference_val: float = math.inf
    last_improvement: int = 0
    stop_reason: str = ""
