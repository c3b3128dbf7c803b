"""The analytic checks the pipeline runs are unit tests of the same functions, and each can fail.

Training-based checks run here at their pipeline budgets for two methods (a discrete and a
continuous one); the pipeline's checks rule runs them for every method.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from replication.checks import bits, entropy, maps, ode, trained
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


def test_bits_per_dim_identities():
    assert_all_passed(bits.bits_per_dim_checks())


def test_bits_per_dim_check_catches_a_missing_logit_jacobian(monkeypatch):
    """Dropping the logit's log-determinant (the classic port bug) must fail the check."""
    from replication.flows.images.layers import LogitTransform

    forward = LogitTransform.forward
    monkeypatch.setattr(
        LogitTransform, "forward", lambda self, x: (forward(self, x)[0], x.new_zeros(x.shape[0]))
    )
    failed = [c for c in bits.bits_per_dim_checks() if not c.passed]
    assert {c.name for c in failed} == {
        f"bits_per_dim/logit_logistic/alpha={a:g}" for a in bits.ALPHAS
    }


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


@pytest.mark.slow  # a statistical training: 200 dopri5 iterations
def test_gaussian_data_reaches_the_analytic_entropy():
    # One method here (a continuous one, the more involved log-det); every pipeline run checks
    # every method with this same function (rules/checks.smk).
    assert trained.gaussian_data(CONFIGS / "ffjord.yaml").passed


def test_gaussian_check_fails_an_undertrained_model():
    assert not trained.gaussian_data(CONFIGS / "realnvp.yaml", iterations=5).passed


def test_determinism():
    assert trained.determinism(CONFIGS / "realnvp.yaml").passed


def test_collect_renders_and_verify_fails_on_a_failed_check(tmp_path, capsys):
    import json

    from replication.__main__ import main
    from replication.checks import collect

    good, bad = close("a/ok", "x", 1.0, 1.0, 0.1), close("b/off", "y", 1.0, 2.0, 0.1)
    collect.write(tmp_path / "one.json", [good], "c0ffee")
    collect.write(tmp_path / "two.json", [bad], "c0ffee")
    failures = collect.collect(
        [tmp_path / "one.json", tmp_path / "two.json"], tmp_path / "checks.json",
        tmp_path / "checks.md", "smoke",
    )  # fmt: skip
    records = json.loads((tmp_path / "checks.json").read_text())
    assert failures == 1 and [r["name"] for r in records] == ["a/ok", "b/off"]
    text = (tmp_path / "checks.md").read_text()
    assert "2 analytic checks, 1 failed" in text and "**FAIL**" in text and "`c0ffee`" in text
    assert main(["checks", "verify", str(tmp_path / "checks.json")]) == 1
    assert "b/off" in capsys.readouterr().out
    assert main(["checks", "verify", str(tmp_path / "one.json")]) == 0


def test_checks_of_trained_models_get_a_verification_nfe_budget():
    """A stiff but usable model (CNF on circles hit model.max_nfe = 10,000 in its mass check)
    is verified with a larger ceiling; options a method lacks are left alone."""
    from replication import config, runs
    from replication.checks import trained

    assert trained.CHECK_MAX_NFE > 10_000
    cnf = config.parse({"model": {"method": "cnf"}})
    raised = runs._with_options(cnf, max_nfe=trained.CHECK_MAX_NFE)
    assert cnf.model.options.max_nfe == 10_000
    assert raised.model.options.max_nfe == trained.CHECK_MAX_NFE
    realnvp = config.parse({"model": {"method": "realnvp"}})
    assert runs._with_options(realnvp, max_nfe=trained.CHECK_MAX_NFE) == realnvp
