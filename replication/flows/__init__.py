"""Normalizing flows: one interface (:mod:`.base`) and one registry (:mod:`.registry`).

Importing this package registers every method, so ``build(name, shape)`` sees them all.
"""

from replication.flows import continuous as _continuous  # noqa: F401  (registers methods)
from replication.flows import discrete as _discrete  # noqa: F401  (registers methods)
from replication.flows import images as _images  # noqa: F401  (registers image methods)
from replication.flows.base import Bijection, Chain, Flow, Penalty
from replication.flows.ode import SolverFailure
from replication.flows.registry import build, build_from_options, methods, options, recipe

__all__ = [
    "Bijection", "Chain", "Flow", "Penalty", "SolverFailure", "build", "build_from_options",
    "methods", "options", "recipe",
]  # fmt: skip
