"""The analytic checks the pipeline runs are unit tests of the same functions, and each can fail.

Training-based checks run here at their pipeline budgets for two methods (a discrete and a
continuous one); the pipeline's checks rule runs them for every method.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from replication.checks import entropy, maps, ode, trained
from replication.checks.records import at_least, close

CONFIGS = Path(__file__).parent.parent / "config" / "experiments" / "toy"


def assert_all_passed(checks):
    failed = [c for c in checks if not c.passed]
    assert checks and not failed, failed


def test_records_decide_from_the_numbers():
    assert close("a", "", 1.0, 1.05, 0.1).passed and not close("a", "", 1.0, 1.2, 0.1).passed
    assert not close("a", "", 1.0, float("nan"), 0.1).passed
    assert at_least("b", "", 2.0, 1.95, 0.1).passed and at_least("b", "", 2.0, 9.0, 0.1).passed
    assert not at_least("b", "", 2.0, 1.8, 0.1).passed


def test_change_of_variables_for_every_family():
    checks = maps.change_of_variables()
    assert {c.name.split("/")[2] for c in checks} == set(maps.FAMILIES)
    assert_all_passed(checks)


def test_change_of_variables_catches_a_wrong_log_determinant(monkeypatch):
    def broken(matrix, offset):
        transform = maps.nice_map(matrix, offset)
        with torch.no_grad():  # the scaling now disagrees with the map the check expects
            transform.steps[-1].log_scale.add_(0.1)
        return transform

    monkeypatch.setitem(maps.FAMILIES, "nice", broken)
    assert not any(c.passed for c in maps.check_family("nice", "shear"))


def test_linear_ode_and_penalties():
    assert_all_passed(ode.linear_ode())


def test_hutchinson_is_unbiased():
    assert_all_passed(ode.hutchinson_unbiased())


def test_hutchinson_check_detects_a_biased_estimator():
    """Probes with E[e e^T] = 1.1^2 I overestimate the trace by 21%: the check must say so."""
    scaled = {"scaled gaussian": lambda z: 1.1 * torch.randn_like(z)}
    assert not any(c.passed for c in ode.hutchinson_unbiased(probes=scaled))


@pytest.mark.parametrize("name", ["8gaussians", "checkerboard", "rings"])
def test_toy_entropy_matches_quadrature(name):
    check = entropy.toy_entropy(name, samples=50_000, grid=200)
    assert check.passed and check.standard_error is not None


@pytest.mark.parametrize("method", ["realnvp", "ffjord"])
def test_gaussian_data_reaches_the_analytic_entropy(method):
    assert trained.gaussian_data(method, CONFIGS).passed


def test_gaussian_check_fails_an_undertrained_model():
    assert not trained.gaussian_data("realnvp", CONFIGS, iterations=5).passed


def test_determinism():
    assert trained.determinism(CONFIGS / "realnvp.yaml").passed
