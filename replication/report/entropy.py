"""Differential entropies of the toy densities: the lowest test NLL any model can reach.

The expected NLL of a model q on data from p is H(p) + KL(p || q) >= H(p), so the gap
``test NLL - H`` measures how far a method is from a perfect fit (in nats). Each H is the
analytic check ``toy_entropy/<dataset>`` (:func:`replication.checks.entropy.toy_entropy`): a
Monte-Carlo estimate with its standard error, checked against grid quadrature. The file holds
those check records, so the same numbers feed the toy table and the checks table.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from replication.checks import collect
from replication.checks.entropy import toy_entropy
from replication.datasets import toy2d
from replication.provenance import git_commit
from replication.typed import ConfigError, choice_error, read_json

PREFIX = "toy_entropy/"


def write(names: Sequence[str], path: str | Path) -> dict[str, dict[str, float]]:
    """Compute the entropy checks of ``names`` and write their records to ``path``."""
    for name in names:
        if name not in toy2d.NAMES:
            raise choice_error("toy dataset", name, toy2d.NAMES)
    checks = [toy_entropy(name) for name in names]
    collect.write(path, checks, git_commit()["commit"])
    return read(path)


def read(path: str | Path) -> dict[str, dict[str, float]]:
    """``{dataset: {"entropy": H, "se": standard error}}`` from a file written by :func:`write`."""
    records = read_json(path, "entropy file")
    try:
        return {
            record["name"].removeprefix(PREFIX): {
                "entropy": record["measured"],
                "se": record["standard_error"],
            }
            for record in records
            if record["name"].startswith(PREFIX)
        }
    except (TypeError, KeyError, AttributeError):
        raise ConfigError(f"{path} is not an entropy file written by `entropy`") from None
