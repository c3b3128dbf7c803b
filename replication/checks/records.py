"""One analytic check: what is known, the value expected, the value measured, the tolerance."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Check:
    """The outcome of one check; ``passed`` is decided when it is made, from the numbers."""

    name: str
    known: str  # the closed form or fact the expectation comes from
    expected: float
    measured: float
    tolerance: float
    passed: bool
    standard_error: float | None = None  # of ``measured``, for Monte-Carlo quantities
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


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
