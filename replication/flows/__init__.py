"""Normalizing flows: one interface (:mod:`.base`) and one registry (:mod:`.registry`).

Importing this package imports every module under it, which registers every method, so
``build(name, shape)`` sees them all: a new method's file needs no line here.
"""

import importlib
import pkgutil

from replication.flows.base import Bijection, Chain, Flow, Penalty
from replication.flows.registry import build, build_from_options, methods, options, recipe
from replication.flows.solver_failures import SolverFailure

__all__ = [
    "Bijection", "Chain", "Flow", "Penalty", "SolverFailure", "build", "build_from_options",
    "methods", "options", "recipe",
]  # fmt: skip

# In name order: continuous before discrete, so methods() lists cnf, ffjord, rnode, nice, ...
for _module in pkgutil.walk_packages(__path__, f"{__name__}."):
    importlib.import_module(_module.name)
