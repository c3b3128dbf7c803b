"""The command line: bad input exits with code 2 and writes nothing.

The commands run in-process through ``main`` (what ``python -m replication`` calls; a fresh
interpreter costs seconds of imports and tests nothing more), with their output captured; the
missing file case runs a real process, to check the exit code a shell sees.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys

import pytest

from replication.__main__ import main
from replication.flows import methods


def cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m replication ARGS`` in this process: its exit code and captured output."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = main(list(args))
        except SystemExit as stop:  # argparse: --help and usage errors
            code = stop.code
    return subprocess.CompletedProcess(args, code, stdout.getvalue(), stderr.getvalue())


def test_help_explains_every_command():
    result = cli("--help")
    assert result.returncode == 0 and "train" in result.stdout
    assert "metrics.json" in cli("train", "--help").stdout


KNOWN_METHODS = ", ".join(sorted(methods()))


@pytest.mark.parametrize(
    ("yaml_text", "overrides", "message"),
    [
        ("model: {method: maf}", [], f"unknown method 'maf'; valid choices: {KNOWN_METHODS}"),
        ("model: {method: nice}", ["data.name=spirals"], "unknown dataset 'spirals'"),
        ("model: {method: nice}", ["train.lr=abc"], "train.lr: expected float, got str 'abc'"),
        ("model: {method: nice, widht: 3}", [], "unknown key 'model.widht'"),
        ("model: [", [], "is not valid YAML"),
    ],
)
def test_bad_config_exits_2_and_writes_nothing(tmp_path, capsys, yaml_text, overrides, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    out = tmp_path / "out"
    code = main(
        ["train", "--config", str(path), "--out", str(out), *[f"--set={o}" for o in overrides]]
    )
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_missing_config_file_exits_2(tmp_path):
    args = ["train", "--config", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "o")]
    result = subprocess.run(
        [sys.executable, "-m", "replication", *args], check=False, capture_output=True, text=True
    )
    assert result.returncode == 2 and "config file not found" in result.stderr
    assert not (tmp_path / "o").exists()


def test_train_command_writes_metrics(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(
        "model: {method: realnvp, couplings: 2, hidden: [16]}\n"
        "data: {train_size: 1000, val_size: 500, test_size: 500}\n"
        "train: {iterations: 20, batch_size: 64, eval_every: 10}\n"
    )
    result = cli("train", "--config", str(path), "--out", str(tmp_path / "run"), "--set", "seed=3")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["seed"] == 3
    nll = metrics["test_nll"]
    assert f"ok: test NLL {nll:.4f} nats -> " in result.stdout  # rounded, with its unit
    assert "iter 20/20" in result.stderr  # one progress line per validation in logs


TINY = (
    "model: {method: realnvp, couplings: 2, hidden: [16]}\n"
    "data: {train_size: 1000, val_size: 500, test_size: 500}\n"
    "train: {iterations: 20, batch_size: 64, eval_every: 10}\n"
)
ENTROPY = [{"name": "toy_entropy/8gaussians", "measured": 2.83, "standard_error": 0.002}]


def test_train_writes_the_density_grid_and_checks_the_standalone_commands_write(tmp_path):
    """``train --density --checks`` (the pipeline's toy job) writes, after training, what
    ``density --run`` and ``checks run`` write from the finished run."""
    (tmp_path / "tiny.yaml").write_text(TINY)
    (tmp_path / "entropy.json").write_text(json.dumps(ENTROPY))
    run = tmp_path / "run"
    result = cli("train", "--config", str(tmp_path / "tiny.yaml"), "--out", str(run),
                 "--density", str(run / "density.npz"), "--checks", str(run / "checks.json"),
                 "--entropy", str(tmp_path / "entropy.json"), "--grid", "60")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (
        f"wrote {run / 'density.npz'}" in result.stdout and "checks.json: 3 checks" in result.stdout
    )
    apart = tmp_path / "apart"
    assert cli("density", "--run", str(run), "--out", str(apart / "density.npz")).returncode == 0
    checks = cli("checks", "run", "--run", str(run), "--entropy", str(tmp_path / "entropy.json"),
                 "--grid", "60", "--out", str(apart / "checks.json"))  # fmt: skip
    assert checks.returncode == 0, checks.stderr
    assert (run / "density.npz").read_bytes() == (apart / "density.npz").read_bytes()
    records = json.loads((run / "checks.json").read_text())
    assert records == json.loads((apart / "checks.json").read_text())
    assert [r["name"].rsplit("/", 1)[1] for r in records] == [
        "mass",
        "round_trip",
        "nll_vs_entropy",
    ]
    assert "(60^2 grid)" in records[0]["known"]  # --grid reached the mass check


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--checks", "{tmp}/c.json"], "train --checks needs --entropy"),
        (
            ["--checks", "{tmp}/c.json", "--entropy", "{tmp}/moons.json"],
            "no entropy of '8gaussians'",
        ),
        (["--density", "{tmp}"], "--density {tmp} is a folder, not a file"),
    ],
)
def test_bad_after_training_options_exit_2_before_training(tmp_path, capsys, extra, message):
    (tmp_path / "tiny.yaml").write_text(TINY)
    (tmp_path / "moons.json").write_text(json.dumps([{**ENTROPY[0], "name": "toy_entropy/moons"}]))
    out = tmp_path / "run"
    args = ["train", "--config", str(tmp_path / "tiny.yaml"), "--out", str(out)]
    try:
        code = main(args + [arg.format(tmp=tmp_path) for arg in extra])
    except SystemExit as stop:  # argparse's own usage errors
        code = stop.code
    assert code == 2
    assert message.format(tmp=tmp_path) in capsys.readouterr().err
    assert not out.exists()  # nothing trained


def test_the_end_of_run_line_of_an_image_run_gives_bits_per_dim():
    from replication.cli.run import _result_line

    line = _result_line({"test_nll": -680.0594844970703, "test_bpd": 1.2345678})
    assert line == "test NLL -680.0595 nats = 1.2346 bits/dim"
    assert _result_line({"test_nll": None}) == "no test result"
