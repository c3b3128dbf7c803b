"""What a run's status says, and the one place that decides it.

- ``ok``: trained and evaluated as configured.
- ``recovered: ...``: training diverged after its best validation and came back (or ended);
  the test result is that of the kept best-on-validation weights, so the number is valid for
  those weights, and the report says what happened.
- anything else (``diverged: ...``, ``solver failure ...``): the run failed. It is a recorded
  result, listed in the run status table; its numbers are not reported and its analytic
  checks are not applicable.

A divergence is read from the recorded validation curve: after the best validation, the
validation NLL (or, for maximum-likelihood runs, the training NLL) was not finite or was worse than the untrained model's validation
NLL (iteration 0). Ordinary overfitting never gets there; a blow-up does. So the status of
runs recorded before this rule existed (``metrics.json`` saying ``ok``) is derived the same
way when they are summarised.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

OK = "ok"
RECOVERED = "recovered"
# metrics.json "objective" of runs trained by maximum likelihood (the default; files written
# before the field existed are such runs): their training loss is an NLL.
MAXIMUM_LIKELIHOOD = "maximum likelihood"


def usable(status: str) -> bool:
    """Whether the run's test result is reported (``ok`` or ``recovered``)."""
    return status == OK or status.startswith(f"{RECOVERED}:")


def divergence(
    val_curve: Sequence[Mapping], best_iteration: int, objective: str = MAXIMUM_LIKELIHOOD
) -> str | None:
    """How training diverged after ``best_iteration`` (its worst value), or None if it did not.
    The training loss is compared with NLLs only when it is one (``objective``)."""
    if not val_curve:
        return None
    untrained = val_curve[0]["val_nll"]
    keys = [("val_nll", "validation NLL")]
    if objective == MAXIMUM_LIKELIHOOD:  # "train_nll": files written before "train_loss"
        keys += [("train_loss", "training NLL"), ("train_nll", "training NLL")]
    bad = [
        (not math.isfinite(value), value, name, point["iteration"])
        for point in val_curve
        if point["iteration"] > best_iteration
        for key, name in keys
        if (value := point.get(key)) is not None
        and not (math.isfinite(value) and value <= untrained)
    ]
    if not bad:
        return None
    _, value, name, iteration = max(bad, key=lambda found: (found[0], found[1]))
    return (
        f"{name} reached {value:.5g} at iteration {iteration}, worse than the untrained "
        f"model's validation NLL {untrained:.5g}"
    )


def derive(metrics: Mapping) -> str:
    """The run's status: as recorded, or ``recovered: ...`` for an ``ok`` run whose curve
    shows a divergence after its best validation."""
    status = metrics["status"]
    if status != OK:
        return status
    objective = metrics.get("objective", MAXIMUM_LIKELIHOOD)
    found = divergence(metrics.get("val_curve") or [], metrics.get("best_iteration", 0), objective)
    if found is None:
        return status
    best = metrics.get("best_iteration", 0)
    return (
        f"{RECOVERED}: training diverged after the best validation at iteration {best} "
        f"({found}); the test result uses the iteration-{best} weights"
    )
