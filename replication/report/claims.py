"""``claims.md``: the papers' qualitative claims, each tested on this profile's runs.

One row per claim (and data family): the claim, its source, the numbers that test it, the test
in words, and a verdict: *holds*, *does not hold*, or *not testable at this budget* (with the
reason: fewer than two seeds, a method not run, or a field the runs' metrics files lack).
Everything is read from the summary (:mod:`.summary`), so the same summary gives the same bytes.

The tests, over the finished runs (``ok`` or ``recovered``) of each method:

- *Two means differ* when |m_a - m_b| > 2 SE with SE = sqrt(s_a^2 / n_a + s_b^2 / n_b), the
  standard error of the difference of the means over seeds (Welch's, without its t quantile:
  with 2 to 5 seeds, 2 SE is a plain, stated threshold, not a calibrated 95% test).
  Where each method has a single seed on a dataset (MNIST), the RNODE and flow-matching claims'
  NLL parts use SE = sqrt(se_a^2 + se_b^2) from the two runs' own test standard errors instead:
  that covers the noise of the finite test sample only, not the variation from seed to seed.
- *Ratios* are of the methods' means over seeds per dataset; a family's ratio is the geometric
  mean over its datasets, and a ratio part holds when the ratio is below 1 on every dataset.
- *A quantity grows* by the sign test: of the n runs where it changed, k grew; under "no
  tendency" k ~ Binomial(n, 1/2), and p = P(K >= k) = sum_{i >= k} C(n, i) / 2^n (one-sided).
  The claim holds when p < 0.05 (which needs n >= 5 runs).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from replication import atomic
from replication.report.summary import hit_cap
from replication.report.tables import caption
from replication.status import usable

HOLDS, FAILS, UNTESTABLE = "holds", "does not hold", "not testable at this budget"
SIGNIFICANCE = 0.05
_FINLAY = "Finlay et al. 2020 (RNODE), MNIST: 2.8x less training time than FFJORD"
_GRATHWOHL = "Grathwohl et al. 2019 (FFJORD), figure 2"
_LIPMAN = (
    "Lipman et al. 2023 (Flow Matching), Sec. 1: simulation-free CNF training, where "
    "maximum-likelihood training (FFJORD) needs costly ODE solves"
)


@dataclass(frozen=True)
class Claim:
    """One row of ``claims.md``."""

    claim: str
    source: str
    numbers: str
    test: str
    verdict: str


def _finished(frame: pd.DataFrame, family: str, method: str) -> pd.DataFrame:
    runs = frame[(frame["family"] == family) & (frame["method"] == method)]
    return runs[runs["status"].map(usable)]


def _nll_column(family: str) -> str:
    return "test_nll" if family == "toy" else "test_bpd"


def difference(a: pd.Series, b: pd.Series) -> tuple[float, float]:
    """``mean(a) - mean(b)`` and its standard error over seeds (NaN with < 2 seeds in either)."""
    a, b = a.dropna().astype(float), b.dropna().astype(float)
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    return a.mean() - b.mean(), se


def sign_test(first: pd.Series, last: pd.Series) -> tuple[int, int, float]:
    """Runs where ``last > first`` (k), runs where they differ (n), and P(K >= k | n, 1/2)."""
    change = (last.astype(float) - first.astype(float)).dropna()
    change = change[change != 0]
    grew, n = int((change > 0).sum()), len(change)
    p = sum(math.comb(n, i) for i in range(grew, n + 1)) / 2**n
    return grew, n, p


def _missing(runs: dict[str, pd.DataFrame], columns: tuple[str, ...]) -> str | None:
    """Why the methods' runs lack what a claim needs (a method, a recorded field), or None."""
    for method, ran in runs.items():
        if ran.empty:
            return f"no finished {method} runs"
        for column in columns:
            if ran[column].isna().any():
                return f"{method}: {column} not recorded (metrics written before it was)"
    return None


def _few_seeds(runs: dict[str, pd.DataFrame]) -> str | None:
    """Why the methods' runs cannot give a standard error (a dataset with one seed), or None."""
    for method, ran in runs.items():
        seeds = ran.groupby("dataset")["seed"].nunique().min()
        if seeds < 2:
            return f"{method}: {seeds} seed per dataset, a standard error needs 2"
    return None


def single_run_difference(a: pd.DataFrame, b: pd.DataFrame, column: str) -> tuple[float, float]:
    """``a - b`` of one run each and the SE of that difference from the runs' own test standard
    errors, sqrt(se_a^2 + se_b^2): test-sample noise only (NaN unless one run each, with SEs)."""
    if len(a) != 1 or len(b) != 1:
        return math.nan, math.nan
    (value_a, se_a), (value_b, se_b) = (
        runs[[column, f"{column}_se"]].astype(float).iloc[0] for runs in (a, b)
    )
    return value_a - value_b, math.hypot(se_a, se_b)


def dataset_difference(a: pd.DataFrame, b: pd.DataFrame, column: str) -> tuple[float, float, str]:
    """Mean ``a`` - mean ``b`` of ``column`` on one dataset and its SE over seeds, or, with one
    seed each, from the two runs' own test standard errors (if recorded; the returned note
    says so); SE NaN when neither applies."""
    diff, se = difference(a[column], b[column])
    if math.isnan(se):
        single = single_run_difference(a, b, column)
        if not math.isnan(single[1]):
            return *single, ", one seed: test-sample SE"
    return diff, se, ""


def _unjudged(runs: dict[str, pd.DataFrame], column: str) -> str:
    """The verdict of a claim whose NLL part had no standard error on some dataset."""
    few = _few_seeds(runs)
    few = f"{few} (or both runs' {column}_se)" if few else "unequal seeds on a dataset"
    return f"{UNTESTABLE}: {few}"


def _why_untestable(runs: dict[str, pd.DataFrame], columns: tuple[str, ...]) -> str | None:
    return _missing(runs, columns) or _few_seeds(runs)


def _capped(runs: pd.DataFrame) -> str:
    capped = int(hit_cap(runs["converged"]).sum())
    known = int(runs["converged"].notna().sum())
    return f"{capped}/{known} runs hit the iteration cap" if known else "convergence not recorded"


def _ratio(rnode: pd.DataFrame, ffjord: pd.DataFrame, column: str) -> tuple[float, float]:
    """Geometric mean over datasets and largest per-dataset ratio of the means of ``column``."""
    ratios = rnode.groupby("dataset")[column].mean() / ffjord.groupby("dataset")[column].mean()
    ratios = ratios.dropna()
    return float(np.exp(np.log(ratios).mean())), ratios.max()


def rnode_claim(frame: pd.DataFrame, family: str) -> Claim:
    """Claim a: RNODE reaches FFJORD's NLL or better with fewer evaluations and less time."""
    column = _nll_column(family)
    runs = {m: _finished(frame, family, m) for m in ("rnode", "ffjord")}
    test = (
        f"NLL: on every dataset, mean RNODE - mean FFJORD {column} <= 2 SE (not significantly "
        "worse); with one seed per method on a dataset, SE = sqrt(se_a² + se_b²) from the two "
        "runs' own test standard errors, which covers test-sample noise only, not "
        "seed-to-seed variation. NFE: training NFE per iteration (forward + backward, mean over "
        "training), ratio RNODE/FFJORD of the means < 1 on every dataset; time: the same for "
        "training seconds. Holds only if all three parts hold."
    )
    claim = f"RNODE reaches FFJORD's NLL or better with fewer training evaluations and less " \
        f"training time ({family})"  # fmt: skip
    why = _missing(runs, (column, "train_nfe", "train_seconds"))
    if why is None and set(runs["rnode"]["dataset"]) != set(runs["ffjord"]["dataset"]):
        why = "RNODE and FFJORD ran on different datasets"
    if why is not None:
        return Claim(claim, _FINLAY, "–", test, f"{UNTESTABLE}: {why}")
    rnode, ffjord = runs["rnode"], runs["ffjord"]
    parts, nll_ok, judged = [], True, True
    for dataset in dict.fromkeys(ffjord["dataset"]):
        a, b = rnode[rnode["dataset"] == dataset], ffjord[ffjord["dataset"] == dataset]
        diff, se, kind = dataset_difference(a, b, column)
        judged &= not math.isnan(se)
        nll_ok &= diff <= 2 * se
        shown = "–" if math.isnan(se) else f"{2 * se:.3f}"
        parts.append(f"{dataset} {diff:+.3f} (2 SE {shown}{kind})")
    nfe, nfe_max = _ratio(rnode, ffjord, "train_nfe")
    seconds, seconds_max = _ratio(rnode, ffjord, "train_seconds")
    numbers = (
        f"{column} difference: {'; '.join(parts)}. NFE/iteration ratio {nfe:.3f} "
        f"(largest {nfe_max:.3f}); training seconds ratio {seconds:.3f} (largest "
        f"{seconds_max:.3f}). RNODE {_capped(rnode)}; FFJORD {_capped(ffjord)}."
    )
    if not judged:  # the numbers stand; the NLL part cannot be judged
        return Claim(claim, _FINLAY, numbers, test, _unjudged(runs, column))
    holds = nll_ok and nfe_max < 1 and seconds_max < 1
    return Claim(claim, _FINLAY, numbers, test, HOLDS if holds else FAILS)


def _compare(ffjord: pd.DataFrame, other: pd.DataFrame) -> tuple[int, int, int]:
    """Datasets where FFJORD's mean test NLL is lower by > 2 SE, within 2 SE, higher by > 2 SE."""
    counts = [0, 0, 0]
    for dataset in dict.fromkeys(ffjord["dataset"]):
        if dataset not in set(other["dataset"]):
            continue
        diff, se = difference(
            ffjord.loc[ffjord["dataset"] == dataset, "test_nll"],
            other.loc[other["dataset"] == dataset, "test_nll"],
        )
        counts[0 if diff < -2 * se else 2 if diff > 2 * se else 1] += 1
    return counts[0], counts[1], counts[2]


def ffjord_claim(frame: pd.DataFrame) -> Claim:
    """Claim b: FFJORD fits the toy densities better than Glow and RealNVP."""
    others = ("glow", "realnvp")
    runs = {m: _finished(frame, "toy", m) for m in ("ffjord", *others)}
    test = (
        "Per toy dataset, FFJORD's mean test NLL against each other method's: significantly "
        "better if lower by more than 2 SE (standard error of the difference of the means over "
        "seeds), worse if higher by more, else indistinguishable. Holds if, against each of "
        "Glow and RealNVP, FFJORD is better on more than half of the datasets and worse on none."
    )
    claim = "FFJORD fits the toy densities better than Glow and RealNVP"
    why = _why_untestable(runs, ("test_nll",))
    if why is not None:
        return Claim(claim, _GRATHWOHL, "–", test, f"{UNTESTABLE}: {why}")
    parts, holds = [], True
    for other in others:
        better, same, worse = _compare(runs["ffjord"], runs[other])
        total = better + same + worse
        holds &= total > 0 and better > total / 2 and worse == 0
        parts.append(
            f"vs {other}: better on {better}, indistinguishable on {same}, worse on {worse} "
            f"of {total} datasets"
        )
    numbers = "; ".join(parts) + f". FFJORD {_capped(runs['ffjord'])}."
    return Claim(claim, _GRATHWOHL, numbers, test, HOLDS if holds else FAILS)


def _growth(runs: pd.DataFrame) -> str:
    grew, n, p = sign_test(runs["val_nfe_first"], runs["val_nfe_last"])
    return f"grew in {grew} of {n} runs that changed (of {len(runs)}), p = {p:.3f}"


def nfe_growth_claim(frame: pd.DataFrame) -> Claim:
    """Claim c: an unregularised continuous flow's test NFE grows during training."""
    runs = {m: frame[(frame["method"] == m) & frame["status"].map(usable)]
            for m in ("ffjord", "rnode")}  # fmt: skip
    test = (
        "Sign test over FFJORD runs (every family): NFE per validation batch of the evaluation "
        "solver at the last validation vs at the first after iteration 0; p = P(K >= k) for "
        f"K ~ Binomial(n, 1/2), one-sided. Holds if p < {SIGNIFICANCE}. RNODE (regularised) "
        "is shown for contrast and does not enter the verdict."
    )
    claim = "A continuous flow's test NFE grows during training without regularisation"
    source = "Grathwohl et al. 2019; Finlay et al. 2020"
    ffjord = runs["ffjord"]
    why = None
    if ffjord.empty:
        why = "no finished ffjord runs"
    elif ffjord["val_nfe_last"].isna().any() or ffjord["val_nfe_first"].isna().any():
        why = "ffjord: val_nfe not recorded (metrics written before it was)"
    elif ffjord["seed"].nunique() < 2:
        why = "ffjord: 1 seed"
    if why is not None:
        return Claim(claim, source, "–", test, f"{UNTESTABLE}: {why}")
    numbers = f"FFJORD: {_growth(ffjord)}."
    if not runs["rnode"].empty and runs["rnode"]["val_nfe_last"].notna().all():
        numbers += f" RNODE: {_growth(runs['rnode'])}."
    _, n, p = sign_test(ffjord["val_nfe_first"], ffjord["val_nfe_last"])
    if n < 5:
        return Claim(claim, source, numbers, test, f"{UNTESTABLE}: {n} runs changed, p < "
                     f"{SIGNIFICANCE} needs 5")  # fmt: skip
    return Claim(claim, source, numbers, test, HOLDS if p < SIGNIFICANCE else FAILS)


def _not_worse(
    fm: pd.DataFrame, base: pd.DataFrame, column: str
) -> tuple[list[str], int, int, bool]:
    """Per dataset of ``base``, fm's mean ``column`` against ``base``'s: the shown parts, the
    datasets where fm is not worse (mean fm - mean base <= 2 SE), the datasets compared, and
    whether every comparison had an SE (over seeds, or one seed each: the runs' test SEs)."""
    parts, not_worse, judged = [], 0, True
    datasets = list(dict.fromkeys(base["dataset"]))
    for dataset in datasets:
        a, b = fm[fm["dataset"] == dataset], base[base["dataset"] == dataset]
        diff, se, kind = dataset_difference(a, b, column)
        judged &= not math.isnan(se)
        not_worse += bool(diff <= 2 * se)
        shown = "–" if math.isnan(se) else f"{2 * se:.3f}"
        parts.append(
            f"{dataset} {a[column].mean():.3f} vs {b[column].mean():.3f} "
            f"({diff:+.3f}, 2 SE {shown}{kind})"
        )
    return parts, not_worse, len(datasets), judged


def fm_claim(frame: pd.DataFrame, family: str) -> Claim:
    """Claim d: flow matching reaches maximum-likelihood training's NLL (FFJORD's and RNODE's)
    at a fraction of its training time."""
    column = _nll_column(family)
    runs = {m: _finished(frame, family, m) for m in ("fm", "ffjord", "rnode")}
    names = {"ffjord": "FFJORD", "rnode": "RNODE"}
    test = (
        f"NLL: for each of FFJORD and RNODE and on every dataset, mean fm - mean baseline "
        f"{column} <= 2 SE (fm not significantly worse); with one seed per method on a dataset, "
        "SE = sqrt(se_a² + se_b²) from the two runs' own test standard errors, which covers "
        "test-sample noise only, not seed-to-seed variation. Time: training seconds, ratio "
        "fm/baseline of the means < 1 on every dataset against both. Test NFE (dopri5, "
        "tolerance 1e-5) ratios are shown and do not enter the verdict. Holds only if the NLL "
        "and time parts both hold."
    )
    claim = "Flow matching reaches maximum-likelihood training's NLL at a fraction of its " \
        f"training time ({family})"  # fmt: skip
    why = _missing(runs, (column, "train_seconds"))
    if why is None and len({frozenset(ran["dataset"]) for ran in runs.values()}) > 1:
        why = "fm, FFJORD and RNODE ran on different datasets"
    if why is not None:
        return Claim(claim, _LIPMAN, "–", test, f"{UNTESTABLE}: {why}")
    fm = runs["fm"]
    nll, counts, seconds, nfe, judged, seconds_ok = [], [], [], [], True, True
    unrecorded = next((m for m, ran in runs.items() if ran["test_nfe"].isna().any()), None)
    for base in ("ffjord", "rnode"):
        parts, not_worse, total, complete = _not_worse(fm, runs[base], column)
        judged &= complete
        counts.append((not_worse, total))
        nll.append(f"vs {names[base]}: {'; '.join(parts)}")
        ratio, largest = _ratio(fm, runs[base], "train_seconds")
        seconds_ok &= largest < 1
        seconds.append(f"fm/{names[base]} {ratio:.3f} (largest {largest:.3f})")
        if unrecorded is None:
            ratio, largest = _ratio(fm, runs[base], "test_nfe")
            nfe.append(f"fm/{names[base]} {ratio:.3f} (largest {largest:.3f})")
    shown_nfe = (
        f"test NFE ratio {', '.join(nfe)}"
        if unrecorded is None
        else f"test NFE: {unrecorded}: test_nfe not recorded"
    )
    (ffjord_ok, total), (rnode_ok, _) = counts
    numbers = (
        f"{column}, fm vs baseline (difference, 2 SE): {'. '.join(nll)}. fm not worse than "
        f"FFJORD on {ffjord_ok}/{total}, than RNODE on {rnode_ok}/{total} datasets. Training "
        f"seconds ratio {', '.join(seconds)}; {shown_nfe}. fm {_capped(fm)}; FFJORD "
        f"{_capped(runs['ffjord'])}; RNODE {_capped(runs['rnode'])}."
    )
    if not judged:  # the numbers stand; the NLL part cannot be judged
        return Claim(claim, _LIPMAN, numbers, test, _unjudged(runs, column))
    holds = ffjord_ok == total and rnode_ok == total and seconds_ok
    return Claim(claim, _LIPMAN, numbers, test, HOLDS if holds else FAILS)


def claims(frame: pd.DataFrame) -> list[Claim]:
    """Every claim, tested on ``frame`` (a summary)."""
    families = list(dict.fromkeys(frame["family"]))
    rows = [rnode_claim(frame, family) for family in families]
    matching = [fm_claim(frame, family) for family in families]
    return [*rows, ffjord_claim(frame), nfe_growth_claim(frame), *matching]


def claims_table(frame: pd.DataFrame) -> str:
    """The text of ``claims.md``."""
    rows = pd.DataFrame([asdict(claim) for claim in claims(frame)])
    return (
        f"# Published claims, tested\n\n{caption(frame)}\n\n"
        "Each row tests one qualitative claim of the papers on this profile's finished runs "
        "(toy: test NLL in nats; MNIST: test bits/dim). SE is the standard error of a "
        "difference of means over seeds, sqrt(s_a²/n_a + s_b²/n_b); ratios are geometric "
        "means over datasets of the ratio of the methods' means. Where each method has a "
        "single seed (MNIST), the RNODE and flow-matching claims compare two runs with their "
        "own test standard errors instead, sqrt(se_a² + se_b²): test-sample noise only, not "
        "seed-to-seed variation. A claim is *not testable at this budget* when a method was "
        "not run, a field was not recorded, or a comparison has fewer than two seeds and no "
        "test standard errors.\n\n"
        f"{rows.to_markdown(index=False, disable_numparse=True)}\n"
    )


def write(frame: pd.DataFrame, out: str | Path) -> Path:
    atomic.write_text(out, claims_table(frame))
    return Path(out)
