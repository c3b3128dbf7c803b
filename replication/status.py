"""What a run's status says, and the one place that decides it.

- ``ok``: trained and evaluated as configured.
- ``recovered: ...``: training diverged after its best validation and came back (or ended);
  the test result is that of the kept best-on-validation weights, so the number is valid for
  those weights, and the report says what happened.
- anything else (``diverged: ...``, ``solver failure ...``): the run failed. It is a recorded
  result, listed in the run status table; its numbers are not reported and its analytic
  checks are not applicable.

A divergence is read from the recorded validation curve: after the best validation, the
training or validation NLL was not finite or was worse than the untrained model's validation
NLL (iteration 0). Ordinary overfitting never gets there; a blow-up does. So the status of
runs recorded before this rule existed (``metrics.json`` saying ``ok``) is derived the same
way when they are summarised.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

OK = "ok"
RECOVERED = "recovered"


def usable(status: str) -> bool:
    """Whether the run's test result is reported (``ok`` or ``recovered``)."""
    return status == OK or status.startswith(f"{RECOVERED}:")


def divergence(val_curve: Sequence[Mapping], best_iteration: int) -> str | None:
    """How training diverged after ``best_iteration`` (its worst value), or None if it did not."""
    if not val_curve:
        return None
    untrained = val_curve[0]["val_nll"]
    bad = [
        (not math.isfinite(value), value, name, point["iteration"])
        for point in val_curve
        if point["iteration"] > best_iteration
        for key, name in (("train_nll", "training"), ("val_nll", "validation"))
        if (value := point.get(key)) is not None
        and not (math.isfinite(value) and value <= untrained)
    ]
    if not bad:
        return None
    _, value, name, iteration = max(bad, key=lambda found: (found[0], found[1]))
    return (
        f"{name} NLL reached {value:.5g} at iteration {iteration}, worse than the untrained "
        f"model's validation NLL {untrained:.5g}"
    )


def derive(metrics: Mapping) -> str:
    """The run's status: as recorded, or ``recovered: ...`` for an ``ok`` run whose curve
    shows a divergence after its best validation."""
    status = metrics["status"]
    if status != OK:
        return status
    found = divergence(metrics.get("val_curve") or [], metrics.get("best_iteration", 0))
    if found is None:
        return status
    best = metrics.get("best_iteration", 0)
    return (
        f"{RECOVERED}: training diverged after the best validation at iteration {best} "
        f"({found}); the test result uses the iteration-{best} weights"
    )
