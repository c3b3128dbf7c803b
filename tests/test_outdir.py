"""The output folder: one run at a time, damaged or stale files handled, results never lost."""

from __future__ import annotations

import json
import os
import stat

import pytest

from replication import config, outdir, train
from replication.__main__ import main
from replication.atomic import write_text
from replication.typed import ConfigError

TINY = (
    "model: {method: realnvp, couplings: 2, hidden: [8]}\n"
    "data: {train_size: 300, val_size: 100, test_size: 100}\n"
    "train: {iterations: 6, batch_size: 32, eval_every: 3}\n"
    "eval: {batch_size: 100, sample_count: 10}\n"
)


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def finished(tiny, out, *overrides: str) -> dict:
    assert main(["train", "--config", str(tiny), "--out", str(out), "--no-progress",
                 *[f"--set={o}" for o in overrides]]) == 0  # fmt: skip
    return json.loads((out / "metrics.json").read_text())


def test_a_second_run_on_a_held_folder_stops_naming_the_holder(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    with outdir.hold(out):
        code = main(["train", "--config", str(tiny), "--out", str(out)])
    assert code == 2
    assert f"is in use by process {os.getpid()}" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == []  # the holder's lock is gone, nothing else


def test_a_lock_file_left_by_a_killed_run_does_not_block(tiny, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / outdir.LOCK).write_text('{"pid": 999999, "host": "gone", "started": "then"}')
    assert finished(tiny, out)["status"] == "ok"
    assert not (out / outdir.LOCK).exists()


def test_another_config_over_a_finished_run_is_refused_unless_overwrite(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    first = finished(tiny, out)
    args = ["train", "--config", str(tiny), "--out", str(out), "--set=seed=1", "--no-progress"]
    assert main(args) == 2
    assert "holds a finished run of another configuration" in capsys.readouterr().err
    assert json.loads((out / "metrics.json").read_text()) == first
    assert main([*args, "--overwrite"]) == 0
    assert json.loads((out / "metrics.json").read_text())["seed"] == 1


def test_the_same_config_again_reruns(tiny, tmp_path):
    out = tmp_path / "run"
    first = finished(tiny, out)
    assert finished(tiny, out)["test_nll"] == first["test_nll"]


@pytest.mark.parametrize("damage", [b"", b"\x80\x04garbage", "truncated"])
def test_a_damaged_checkpoint_is_moved_aside_and_the_run_starts_afresh(
    tiny, tmp_path, capsys, damage
):
    reference = finished(tiny, tmp_path / "reference")
    out = tmp_path / "run"
    out.mkdir()
    if damage == "truncated":
        experiment = config.load(tiny)
        train.run(experiment, tmp_path / "whole", progress=False)
        damage = (tmp_path / "whole" / "model.pt").read_bytes()[:100]
    (out / train.CHECKPOINT).write_bytes(damage)
    metrics = finished(tiny, out)
    assert metrics["test_nll"] == reference["test_nll"]
    (kept,) = out.glob("checkpoint.pt.damaged-*")
    assert kept.read_bytes() == damage
    assert f"moved it to {kept}" in capsys.readouterr().err


def test_temporary_files_of_an_interrupted_write_are_removed(tiny, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    stale = out / ".checkpoint.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    finished(tiny, out)
    assert not stale.exists()


def test_written_files_follow_the_umask(tiny, tmp_path):
    previous = os.umask(0o027)
    try:
        write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o640
    out = tmp_path / "run"
    finished(tiny, out)
    for name in ("metrics.json", "model.pt"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o666 & ~previous


def test_refused_input_leaves_no_folder(tmp_path):
    out = tmp_path / "new" / "run"
    with pytest.raises(ConfigError), outdir.hold(out):
        raise ConfigError("refused")
    assert not (tmp_path / "new").exists()
