"""One analytic check: what is known, the value expected, the value measured, the tolerance.

A check that cannot apply (the checks of a trained model whose run failed) is recorded too,
with ``passed = None`` and the reason in its note: it is neither a pass nor a failure, and
the pipeline's exit status ignores it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Check:
    """The outcome of one check; ``passed`` is decided when it is made, from the numbers."""

    name: str
    known: str  # the closed form or fact the expectation comes from
    expected: float | None
    measured: float | None
    tolerance: float | None
    passed: bool | None  # None: not applicable
    standard_error: float | None = None  # of ``measured``, for Monte-Carlo quantities
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def not_applicable(name: str, known: str, reason: str) -> Check:
    """A check that could not run on this case, and why."""
    return Check(name, known, None, None, None, None, note=f"not applicable: {reason}")


def failed(record: dict) -> bool:
    """Whether a check record (as read back from JSON) failed; not applicable is no failure."""
    return record["passed"] is False


def close(
    name: str,
    known: str,
    expected: float,
    measured: float,
    tolerance: float,
    standard_error: float | None = None,
    note: str = "",
) -> Check:
    """Passes when ``|measured - expected| <= tolerance`` (and both are finite)."""
    passed = math.isfinite(measured) and abs(measured - expected) <= tolerance
    return Check(name, known, expected, measured, tolerance, passed, standard_error, note)


def at_least(
    name: str,
    known: str,
    bound: float,
    measured: float,
    tolerance: float,
    standard_error: float | None = None,
    note: str = "",
) -> Check:
    """Passes when ``measured >= bound - tolerance``: a one-sided check (e.g. NLL >= entropy)."""
    passed = math.isfinite(measured) and measured >= bound - tolerance
    return Check(name, known, bound, measured, tolerance, passed, standard_error, note)
