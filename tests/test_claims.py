"""claims.md: each claim's verdict on synthetic summaries built so that it holds, or not."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from replication.__main__ import main
from replication.report import claims
from replication.report import summary as summary_module

DATASETS = ("8gaussians", "moons")
# method: (test NLL, training NFE per iteration, training seconds, val NFE first -> last)
HOLDING = {
    "ffjord": (2.80, 60.0, 100.0, (20.0, 40.0)),
    "rnode": (2.79, 16.0, 40.0, (16.0, 16.0)),
    "glow": (3.00, None, 10.0, (None, None)),
    "realnvp": (3.10, None, 10.0, (None, None)),
    "fm": (2.80, 0.0, 20.0, (None, None)),  # no ODE solve in training: 0 training NFE
}
TEST_NFE = {"ffjord": 50.0, "rnode": 25.0, "fm": 20.0}  # test NFE (dopri5); none if discrete


def _frame(values: dict, seeds: tuple[int, ...] = (0, 1, 2), **column_values) -> pd.DataFrame:
    """A toy summary: every method x dataset x seed, with a small spread over seeds."""
    rows = []
    for method, (nll, nfe, seconds, (first, last)) in values.items():
        for dataset in DATASETS:
            for seed in seeds:
                jitter = 0.01 * (seed - 1)
                rows.append({
                    "profile": "synthetic", "family": "toy", "dataset": dataset,
                    "method": method, "seed": seed, "status": "ok", "budget": "reduced",
                    "test_nll": nll + jitter, "train_nfe": nfe, "train_seconds": seconds,
                    "test_nfe": TEST_NFE.get(method),
                    "val_nfe_first": first, "val_nfe_last": None if last is None else last + seed,
                    "converged": True, "commit": "0" * 40, "dirty": False,
                    "device": "cpu", "precision": "float32",
                })  # fmt: skip
    frame = pd.DataFrame(rows).reindex(columns=list(summary_module.COLUMNS))
    for column, value in column_values.items():
        frame[column] = value
    return frame


def _verdicts(frame: pd.DataFrame) -> list[str]:
    return [claim.verdict for claim in claims.claims(frame)]


def test_every_claim_holds_where_the_numbers_say_so():
    assert _verdicts(_frame(HOLDING)) == [claims.HOLDS] * 4


def test_each_claim_fails_where_the_numbers_contradict_it():
    values = dict(HOLDING)
    values["rnode"] = (2.90, 16.0, 40.0, (16.0, 16.0))  # significantly worse NLL than FFJORD
    values["glow"] = (2.70, None, 10.0, (None, None))  # Glow beats FFJORD
    values["ffjord"] = (2.80, 60.0, 100.0, (40.0, 20.0))  # NFE shrinks
    values["fm"] = (2.95, 0.0, 20.0, (None, None))  # significantly worse than both
    assert _verdicts(_frame(values)) == [claims.FAILS] * 4


def test_rnode_claim_needs_all_three_parts():
    values = dict(HOLDING)
    values["rnode"] = (2.79, 16.0, 150.0, (16.0, 16.0))  # slower than FFJORD
    rnode = claims.rnode_claim(_frame(values), "toy")
    assert rnode.verdict == claims.FAILS
    assert "training seconds ratio 1.500" in rnode.numbers


def test_one_seed_or_old_metrics_or_a_missing_method_are_not_testable():
    one_seed = _verdicts(_frame(HOLDING, seeds=(0,)))
    assert all(v.startswith(claims.UNTESTABLE) for v in one_seed), one_seed
    rnode = claims.rnode_claim(_frame(HOLDING, seeds=(0,)), "toy")
    assert "training seconds ratio 0.400" in rnode.numbers  # shown, though not judged
    assert "(2 SE –)" in rnode.numbers
    old = _frame(HOLDING, val_nfe_first=None, val_nfe_last=None)
    assert _verdicts(old)[2] == f"{claims.UNTESTABLE}: ffjord: val_nfe not recorded " \
        "(metrics written before it was)"  # fmt: skip
    no_glow = {k: v for k, v in HOLDING.items() if k != "glow"}
    assert _verdicts(_frame(no_glow))[1] == f"{claims.UNTESTABLE}: no finished glow runs"


def test_sign_test_is_the_binomial_tail():
    grew, n, p = claims.sign_test(pd.Series([1.0] * 6), pd.Series([2, 2, 2, 2, 2, 1.0]))
    assert (grew, n) == (5, 5)  # the tie is dropped
    assert p == pytest.approx(1 / 32)
    grew, n, p = claims.sign_test(pd.Series([1.0] * 4), pd.Series([2, 2, 2, 0.0]))
    assert p == pytest.approx((math.comb(4, 3) + 1) / 16)


def test_claims_command_writes_the_same_bytes_twice(tmp_path):
    path = tmp_path / "summary.csv"
    summary_module.write(_frame(HOLDING), path)
    for name in ("a.md", "b.md"):
        assert main(["claims", "--summary", str(path), "--out", str(tmp_path / name)]) == 0
    text = (tmp_path / "a.md").read_text()
    assert text == (tmp_path / "b.md").read_text()
    assert text.count("| holds") == 4 and "Profile `synthetic`" in text


def _mnist(rnode_bpd: float, se: float | None = 0.01, fm_bpd: float | None = None) -> pd.DataFrame:
    """One MNIST seed per method: RNODE at ``rnode_bpd``, FFJORD at 0.99, and flow matching at
    ``fm_bpd`` if given, all with test SE ``se``; RNODE cheaper than FFJORD in NFE and seconds,
    flow matching cheaper than both in seconds."""
    methods = [("ffjord", 0.99, 60.0, 100.0, 100.0), ("rnode", rnode_bpd, 16.0, 40.0, 60.0)]
    if fm_bpd is not None:
        methods.append(("fm", fm_bpd, 0.0, 10.0, 50.0))
    rows = [
        {"profile": "synthetic", "family": "mnist", "dataset": "mnist", "method": method,
         "seed": 0, "status": "ok", "budget": "reduced", "test_bpd": bpd, "test_bpd_se": se,
         "train_nfe": nfe, "train_seconds": seconds, "test_nfe": test_nfe, "converged": True,
         "commit": "0" * 40, "dirty": False, "device": "cpu", "precision": "float32"}
        for method, bpd, nfe, seconds, test_nfe in methods
    ]  # fmt: skip
    return pd.DataFrame(rows).reindex(columns=list(summary_module.COLUMNS))


def test_one_mnist_seed_judges_the_nll_with_the_runs_test_standard_errors():
    within = claims.rnode_claim(_mnist(1.00), "mnist")  # +0.010 against 2 SE = 0.028
    assert within.verdict == claims.HOLDS
    assert "mnist +0.010 (2 SE 0.028, one seed: test-sample SE)" in within.numbers
    assert "test-sample noise only, not seed-to-seed variation" in within.test
    worse = claims.rnode_claim(_mnist(1.05), "mnist")  # +0.060 > 0.028
    assert worse.verdict == claims.FAILS
    unrecorded = claims.rnode_claim(_mnist(1.00, se=None), "mnist")
    assert unrecorded.verdict == f"{claims.UNTESTABLE}: rnode: 1 seed per dataset, a standard " \
        "error needs 2 (or both runs' test_bpd_se)"  # fmt: skip


def test_fm_claim_holds_when_not_worse_and_faster_than_both():
    fm = claims.fm_claim(_frame(HOLDING), "toy")
    assert fm.verdict == claims.HOLDS
    assert "fm not worse than FFJORD on 2/2, than RNODE on 2/2 datasets" in fm.numbers
    assert "8gaussians 2.800 vs 2.790 (+0.010, 2 SE 0.016)" in fm.numbers
    assert "Training seconds ratio fm/FFJORD 0.200 (largest 0.200), fm/RNODE 0.500 " \
        "(largest 0.500)" in fm.numbers  # fmt: skip
    assert "test NFE ratio fm/FFJORD 0.400 (largest 0.400), fm/RNODE 0.800" in fm.numbers
    assert "fm 0/6 runs hit the iteration cap" in fm.numbers
    assert fm.claim.startswith("Flow matching reaches maximum-likelihood training's NLL")
    assert "Lipman et al. 2023" in fm.source


def test_fm_claim_fails_when_worse_on_one_dataset_or_slower():
    frame = _frame(HOLDING)
    frame.loc[(frame["method"] == "fm") & (frame["dataset"] == "moons"), "test_nll"] += 0.1
    worse = claims.fm_claim(frame, "toy")
    assert worse.verdict == claims.FAILS
    assert "fm not worse than FFJORD on 1/2, than RNODE on 1/2 datasets" in worse.numbers
    slower = dict(HOLDING, fm=(2.80, 0.0, 120.0, (None, None)))  # slower than FFJORD and RNODE
    slow = claims.fm_claim(_frame(slower), "toy")
    assert slow.verdict == claims.FAILS
    assert "on 2/2, than RNODE on 2/2" in slow.numbers and "fm/FFJORD 1.200" in slow.numbers


def test_fm_claim_without_fm_runs_is_not_testable():
    no_fm = _frame({k: v for k, v in HOLDING.items() if k != "fm"})
    assert _verdicts(no_fm)[-1] == f"{claims.UNTESTABLE}: no finished fm runs"
    failed = _frame(HOLDING)
    failed.loc[failed["method"] == "fm", "status"] = "failed"
    fm = claims.fm_claim(failed, "toy")
    assert (fm.verdict, fm.numbers) == (f"{claims.UNTESTABLE}: no finished fm runs", "–")
    one_seed = claims.fm_claim(_frame(HOLDING, seeds=(0,)), "toy")
    assert one_seed.verdict == f"{claims.UNTESTABLE}: fm: 1 seed per dataset, a standard error " \
        "needs 2 (or both runs' test_nll_se)"  # fmt: skip
    assert "Training seconds ratio fm/FFJORD 0.200" in one_seed.numbers  # shown, not judged


def test_fm_claim_on_one_mnist_seed_uses_the_runs_test_standard_errors():
    within = claims.fm_claim(_mnist(1.00, fm_bpd=1.01), "mnist")  # +0.020, +0.010 vs 0.028
    assert within.verdict == claims.HOLDS
    assert "mnist 1.010 vs 0.990 (+0.020, 2 SE 0.028, one seed: test-sample SE)" in within.numbers
    assert "test NFE ratio fm/FFJORD 0.500 (largest 0.500), fm/RNODE 0.833" in within.numbers
    assert "test-sample noise only, not seed-to-seed variation" in within.test
    worse = claims.fm_claim(_mnist(1.00, fm_bpd=1.02), "mnist")  # +0.030 > 0.028 vs FFJORD
    assert worse.verdict == claims.FAILS
    assert "fm not worse than FFJORD on 0/1, than RNODE on 1/1 datasets" in worse.numbers
    unrecorded = claims.fm_claim(_mnist(1.00, se=None, fm_bpd=1.01), "mnist")
    assert unrecorded.verdict == f"{claims.UNTESTABLE}: fm: 1 seed per dataset, a standard " \
        "error needs 2 (or both runs' test_bpd_se)"  # fmt: skip
    missing = claims.fm_claim(_mnist(1.00), "mnist")
    assert missing.verdict == f"{claims.UNTESTABLE}: no finished fm runs"
