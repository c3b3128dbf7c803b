"""The report: summary CSV, tables (golden files), verdicts, figure data and figures.

Fixtures in tests/data/ are a small fake profile's metrics files. The golden tables in
tests/data/golden/ fail these tests whenever the rendering changes; after an intended change,
regenerate them with ``UPDATE_GOLDEN=1 pytest tests/test_report.py`` and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from replication import density
from replication.__main__ import main
from replication.report import TOLERANCE_BPD, citations, entropy, figures, readme, tables
from replication.report import summary as summary_module
from replication.report.render import render_report

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "golden"
CITATIONS = Path(__file__).parent.parent / "config" / "citations.yaml"
BUDGETS = {"toy": "reduced", "mnist": "paper"}

REQUIRED_COLUMNS = (
    "profile", "dataset", "method", "seed", "status", "test_nll", "test_nll_se", "test_bpd",
    "test_bpd_se", "nfe_forward", "nfe_backward", "test_nfe", "train_seconds",
    "seconds_per_iter", "params", "commit", "device",
)  # fmt: skip


@pytest.fixture
def in_data(monkeypatch):
    """Run from tests/data, so metrics paths in the summary are short and relative."""
    monkeypatch.chdir(DATA)


@pytest.fixture
def frame(in_data) -> pd.DataFrame:
    paths = sorted(Path("results").glob("*/*/seed*/metrics.json"))
    return summary_module.summarize(paths, "fixture", BUDGETS)


@pytest.fixture
def summary_csv(frame, tmp_path) -> Path:
    path = tmp_path / "summary.csv"
    summary_module.write(frame, path)
    return path


def test_summary_has_every_column_and_pandas_reads_every_number(summary_csv):
    loaded = pd.read_csv(summary_csv)
    assert set(REQUIRED_COLUMNS) <= set(loaded.columns)
    assert len(loaded) == 11
    for column in ("test_nll", "test_bpd", "nfe_forward", "nfe_backward", "test_nfe",
                   "train_seconds", "seconds_per_iter", "params", "seed"):  # fmt: skip
        assert pd.api.types.is_numeric_dtype(loaded[column]), column
    toy = loaded[loaded["dataset"] == "8gaussians"]
    assert toy["test_bpd"].isna().all()  # does not apply: an empty cell
    realnvp = loaded[loaded["method"] == "realnvp"]
    assert realnvp["nfe_forward"].isna().all()  # discrete flow: no NFE
    ffjord = loaded[(loaded["method"] == "ffjord") & (loaded["dataset"] == "8gaussians")]
    assert ffjord["nfe_forward"].tolist() == [20.0, 20.0]  # the end-of-training value


def test_summary_round_trips_and_keeps_provenance(summary_csv, frame):
    loaded = summary_module.read(summary_csv)
    assert loaded["commit"].iloc[0] == "0123456789abcdef0123456789abcdef01234567"
    assert loaded["device"].iloc[0] == "cpu (x86_64)"
    assert loaded["metrics"].iloc[0].startswith("results/")
    assert loaded["test_nll"].tolist() == pytest.approx(frame["test_nll"].tolist(), nan_ok=True)


def test_a_summary_written_before_the_convergence_columns_still_reads(frame, tmp_path):
    summary_module.write(frame.drop(columns=list(summary_module.LATER_COLUMNS)), tmp_path / "s.csv")
    loaded = summary_module.read(tmp_path / "s.csv")
    assert loaded[list(summary_module.LATER_COLUMNS)].isna().all().all()
    assert not summary_module.hit_cap(loaded["converged"]).any()


def test_summary_writes_identical_bytes(frame, tmp_path):
    summary_module.write(frame, tmp_path / "a.csv")
    summary_module.write(frame, tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def _check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.is_file(), f"missing golden file {path}: run with UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} changed: if intended, regenerate (see docstring)"


def test_tables_match_the_golden_files(frame, tmp_path):
    written = tables.write_tables(
        frame, entropy.read("toy_entropy.json"), citations.load(CITATIONS, "mnist"), tmp_path
    )
    assert [path.name for path in written] == ["toy.md", "mnist.md", "status.md"]
    for path in written:
        _check_golden(path.name, path.read_text())


def test_toy_table_shows_entropy_gap_and_partial_seeds(frame):
    text = tables.toy_table(frame, entropy.read("toy_entropy.json"))
    assert "2.960 ± 0.014 (+0.128)" in text  # realnvp on 8gaussians: mean ± std (gap)
    assert "3.600 (+0.134) [1/2 seeds]" in text  # one ffjord run failed
    assert "†" not in text  # no run records a convergence rule: no cap marker, no rule
    assert "`0123456789ab`" in text and "2 seeds (0, 1)" in text


def test_toy_table_marks_cells_where_a_seed_hit_its_iteration_cap(frame):
    frame = frame.copy()
    frame["converged"], frame["patience"], frame["iteration_cap"] = True, 500, 10000
    capped = (frame["method"] == "realnvp") & (frame["dataset"] == "8gaussians")
    frame.loc[capped & (frame["seed"] == 1), "converged"] = False
    frame["nfe_forward_sd"], frame["nfe_backward_sd"], frame["train_nfe"] = 3.0, 4.0, 26.0
    text = tables.toy_table(frame, entropy.read("toy_entropy.json"))
    assert "2.960 ± 0.014 (+0.128) [2/2 seeds]†" in text
    assert text.count("†") == 3  # the rule in the caption, the cell, the footnote
    assert "† k of n seeds hit the iteration cap before converging" in text
    assert "8gaussians realnvp: 1 of 2 seeds." in text
    assert "for 500 iterations (patience; converged), or until its iteration cap of 10,000" in text
    assert "| 26.0 ± 5.0 " in text  # training NFE per iteration: mean ± sd over training
    assert "]†" not in tables.toy_table(frame.assign(converged=True), {})


def test_status_table_lists_the_failed_run_with_its_reason(frame):
    text = tables.status_table(frame)
    assert "1 of 11 runs did not finish" in text
    assert "solver failure at iteration 812" in text
    ok = frame[frame["status"] == "ok"]
    assert "All 10 runs finished" in tables.status_table(ok)


def test_runs_that_are_not_the_paper_config_get_no_verdict(frame):
    """The fixture's metrics record no complete config, so nothing proves they are the paper
    configs: labelled a paper budget or not, no run is judged."""
    text = tables.mnist_table(frame, citations.load(CITATIONS, "mnist"), TOLERANCE_BPD, [])
    rows = text.split("\n\n")[3]
    assert rows.count("not comparable: not the paper config") == 2  # nice and ffjord
    assert "no published number" in rows  # cnf
    assert "reproduced" not in rows and "published |" not in rows.splitlines()[2]


def test_citations_hold_the_published_numbers():
    cited = citations.load(CITATIONS, "mnist").methods
    assert {m: c.value for m, c in cited.items()} == {
        "nice": 4.36, "realnvp": 1.06, "glow": 1.05, "cnf": None, "ffjord": 0.99, "rnode": 0.97,
        "fm": None,
    }  # fmt: skip
    assert all(c.source for c in cited.values())


def test_density_files_are_deterministic_and_round_trip(tmp_path):
    grid = np.linspace(-5, 0, density.POINTS**2).reshape(density.POINTS, density.POINTS)
    density.save(tmp_path / "a.npz", grid)
    density.save(tmp_path / "b.npz", grid)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    loaded, extent = density.load(tmp_path / "a.npz")
    assert extent == (-density.BOUND, density.BOUND, -density.BOUND, density.BOUND)
    assert np.allclose(loaded, grid, atol=5e-3)


def test_true_density_grid_integrates_to_one():
    values = np.exp(density.true_log_density("8gaussians"))
    cell = (2 * density.BOUND / (density.POINTS - 1)) ** 2
    assert values.sum() * cell == pytest.approx(1.0, abs=0.01)


def _fake_run_files(frame: pd.DataFrame, root: Path) -> tuple[pd.DataFrame, list[Path]]:
    """Metrics files, density grids and sample images for every run of ``frame``, under
    ``root``."""
    from matplotlib.image import imsave

    frame = frame.copy()
    originals = frame["metrics"].tolist()
    frame["metrics"] = [str(root / path) for path in frame["metrics"]]
    for run, original in zip(frame.itertuples(), originals, strict=True):
        folder = Path(run.metrics).parent
        folder.mkdir(parents=True, exist_ok=True)
        Path(run.metrics).write_bytes(Path(original).read_bytes())  # the convergence figure's
        if run.family == "toy":
            density.save(folder / figures.DENSITY_FILE, -np.ones((density.POINTS,) * 2))
        else:
            imsave(folder / figures.SAMPLES_FILE, np.zeros((8, 8)), cmap="gray")
    truth = []
    for name in ("8gaussians", "checkerboard"):
        truth.append(root / f"{name}.npz")
        density.save(truth[-1], -np.ones((density.POINTS,) * 2))
    return frame, truth


def test_render_writes_every_file_and_is_deterministic(frame, tmp_path):
    frame, truth = _fake_run_files(frame, tmp_path / "runs")
    summary_path = tmp_path / "summary.csv"
    summary_module.write(frame, summary_path)
    paths = {}
    for name in ("first", "second"):
        written = render_report(
            summary_path, "toy_entropy.json", CITATIONS, truth, tmp_path / name, TOLERANCE_BPD
        )
        paths[name] = {p.relative_to(tmp_path / name).as_posix(): p.read_bytes() for p in written}
    assert sorted(paths["first"]) == [
        "README.md", "benchmarks.md", "claims.md", "figures/convergence.png",
        "figures/mnist_samples.png",
        "figures/toy_densities.png",
        "mnist.md", "status.md", "toy.md",
    ]  # fmt: skip
    assert paths["first"] == paths["second"]
    text = paths["first"]["README.md"].decode()
    for link in ("(toy.md)", "(mnist.md)", "(status.md)", "(claims.md)", "(benchmarks.md)",
                 "(figures/toy_densities.png)",
                 "(figures/mnist_samples.png)", "(figures/convergence.png)",
                 "(../summary.csv)"):  # fmt: skip
        assert link in text


def _tiny_metrics(path: Path, method: str, seed: int, nll: list[float]) -> Path:
    """A metrics file with only what the summary and the convergence figure read."""
    path.mkdir(parents=True)
    metrics = {
        "dataset": "moons", "method": method, "seed": seed, "status": "ok",
        "val_curve": [{"iteration": 100 * i, "val_nll": v, "val_nll_se": 0.01, "val_nfe": 20 + i}
                      for i, v in enumerate(nll)],
        "timing": {"val_train_seconds": [5.0 * i for i in range(len(nll))]},
        "convergence": {"converged": seed == 0, "reason": "patience", "patience": 200,
                        "cap": 1000, "last_improvement": 100, "stopped_at": 300},
        "nfe_forward": {"end": 26.0, "mean": 24.0, "sd": 3.0},
        "nfe_backward": {"end": 0.0, "mean": 0.0, "sd": 0.0},
    }  # fmt: skip
    (path / "metrics.json").write_text(json.dumps(metrics))
    return path / "metrics.json"


def test_convergence_figure_command_draws_from_metrics_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    paths = [
        _tiny_metrics(Path("runs/ffjord/seed0"), "ffjord", 0, [6.0, 2.6, 2.5, 2.45]),
        _tiny_metrics(Path("runs/glow/seed1"), "glow", 1, [5.0, 2.9, 2.7]),
    ]
    frame = summary_module.summarize(paths, "tiny", {"toy": "reduced"})
    assert frame["val_nfe_first"].tolist() == [21, 21] and frame["val_nfe_last"].tolist() == [
        23,
        22,
    ]
    assert frame["converged"].tolist() == [True, False]
    summary_module.write(frame, "summary.csv")
    loaded = summary_module.read("summary.csv")
    assert summary_module.hit_cap(loaded["converged"]).tolist() == [False, True]
    assert loaded["train_nfe"].tolist() == [24.0, 24.0] and loaded["nfe_forward_sd"][0] == 3.0
    assert loaded["patience"][0] == 200 and loaded["iteration_cap"][0] == 1000
    out = tmp_path / "figures" / "convergence.png"
    args = ["figures", "--kind", "convergence", "--summary", "summary.csv", "--out", str(out)]
    assert main(args) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    seconds, nll = figures.validation_curve(paths[1])
    assert seconds.tolist() == [0.0, 5.0, 10.0] and nll.tolist() == [5.0, 2.9, 2.7]


def test_readme_traces_a_number_to_its_run(frame, tmp_path):
    text = readme.render(frame, tmp_path / "README.md", tmp_path / "summary.csv", [], [])
    assert "results/8gaussians/ffjord/seed0/metrics.json" in text
    assert "config digest `digest-8gaussians-ffjord-0`" in text
    assert "torch 2.14.1" in text and "cpu (x86_64)" in text


@pytest.mark.parametrize(
    "command",
    [
        "summarize",
        "entropy",
        "density",
        "samples",
        "tables",
        "claims",
        "benchmarks",
        "figures",
        "readme",
        "render",
        "paper-budget",
    ],
)
def test_every_report_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_code:
        main([command, "--help"])
    assert exit_code.value.code == 0
    assert "usage: python -m replication " + command in capsys.readouterr().out


def test_density_command_needs_exactly_one_source(tmp_path, capsys):
    assert main(["density", "--out", str(tmp_path / "x.npz")]) == 2
    assert "exactly one of --run DIR and --dataset NAME" in capsys.readouterr().err


def test_summarize_command_rejects_a_bad_budget(in_data, tmp_path, capsys):
    metrics = "results/mnist/nice/seed0/metrics.json"
    args = ["summarize", metrics, "--profile", "x", "--budget", "mnist=huge", "--out", "s.csv"]
    assert main(args) == 2
    assert "expected FAMILY=paper or FAMILY=reduced" in capsys.readouterr().err


def test_density_of_a_trained_run_matches_its_log_prob(tmp_path):
    import torch

    from replication import config, evaluate, train
    from replication.runs import load_run

    experiment = config.parse(
        {
            "model": {"method": "realnvp", "couplings": 2, "hidden": [16]},
            "data": {"train_size": 500, "val_size": 200, "test_size": 200},
            "train": {"iterations": 20, "batch_size": 64, "eval_every": 20},
            "eval": {"sample_count": 10},
        }
    )
    train.run(experiment, tmp_path, progress=False)
    out = evaluate.write_run_density(tmp_path)
    assert out == tmp_path / "density.npz"
    values, _ = density.load(out)
    assert values.shape == (density.POINTS, density.POINTS) and np.isfinite(values).all()
    flow = load_run(tmp_path).flow
    corner = density.grid()[:1].to(torch.float32)  # (-4, -4): row 0, column 0
    with torch.no_grad():
        expected = flow.log_prob(corner).item()
    assert values[0, 0] == pytest.approx(expected, abs=0.05)


def test_seconds_to_target_is_the_first_validation_at_or_below_the_target():
    metrics = {
        "val_curve": [{"val_nll": v} for v in (6.0, 2.9, 2.70, 2.65, 2.80)],
        "timing": {"val_train_seconds": [0.0, 4.0, 9.0, 15.0, 20.0]},
    }
    assert summary_module.seconds_to_target(metrics, 2.70) == 9.0  # reached: <= counts
    assert summary_module.seconds_to_target(metrics, 2.60) is None  # never reached
    assert summary_module.seconds_to_target(metrics, None) is None  # no entropy, no target


def test_summarize_command_records_time_to_target_from_the_entropy(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    paths = [
        _tiny_metrics(Path("runs/ffjord/seed0"), "ffjord", 0, [6.0, 2.6, 2.5, 2.45]),
        _tiny_metrics(Path("runs/glow/seed1"), "glow", 1, [5.0, 2.9, 2.7]),
    ]
    (tmp_path / "h.json").write_text(json.dumps([
        {"name": "toy_entropy/moons", "measured": 2.48, "standard_error": 0.002}
    ]))  # fmt: skip
    args = ["summarize", *map(str, paths), "--profile", "tiny", "--budget", "toy=reduced",
            "--entropy", "h.json", "--out", "summary.csv"]  # fmt: skip
    assert main(args) == 0
    loaded = summary_module.read("summary.csv")
    assert loaded["target_nll"].tolist() == pytest.approx([2.51, 2.51])
    assert loaded["seconds_to_target"][0] == 10.0  # ffjord: 2.5 at the third validation
    assert pd.isna(loaded["seconds_to_target"][1])  # glow never got below 2.7
