"""The GPU path's logic, checked on the CPU: precision set and recorded, every generator through a
checkpoint, one GPU per job, and the gpu-check command's parts (the CUDA-only ones with the CPU
standing in for the GPU)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DEVICE_ENV
from test_train import tiny

from replication import cli, config, generators, gpu_check, gpu_slots, optim, precision, train
from replication.history import History
from replication.runs import build_flow
from replication.typed import ConfigError


@pytest.fixture(autouse=True)
def _float32_afterwards():
    yield
    precision.apply("float32")


# Precision.


def test_float32_sets_every_backend_to_ieee():
    torch.backends.cudnn.conv.fp32_precision = "tf32"  # torch 2.14's default for convolutions
    flags = precision.apply("float32")
    assert set(flags.values()) == {"ieee"}
    assert torch.backends.cudnn.conv.fp32_precision == "ieee"
    assert precision.effective(torch.device("cpu")) == "float32"


def test_tf32_is_allowed_on_cuda_backends_only(monkeypatch):
    flags = precision.apply("tf32")
    assert flags["cuda.matmul"] == flags["cudnn.conv"] == "tf32"
    assert flags["mkldnn.matmul"] == flags["mkldnn.conv"] == "ieee"  # CPU results unchanged
    assert precision.effective(torch.device("cpu")) == "float32"
    gpu = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert precision.effective(gpu) == "tf32"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
    assert precision.effective(gpu) == "float32"  # no TF32 units before Ampere


def test_unknown_precision_is_a_config_error():
    with pytest.raises(ConfigError, match="precision.*valid choices: float32, tf32"):
        config.parse({"model": {"method": "nice"}, "precision": "bf16"})


def test_a_run_records_its_precision(tmp_path):
    torch.backends.cudnn.conv.fp32_precision = "tf32"
    metrics = train.run(tiny(iterations=2, eval_every=1), tmp_path, progress=False)
    recorded = metrics["provenance"]["precision"]
    assert recorded["effective"] == "float32"
    assert recorded["flags"]["cudnn.conv"] == "ieee"
    assert metrics["config"]["precision"] == "float32"


# Generators through a checkpoint.


def _draw(batches: torch.Generator) -> list:
    return [random.random(), np.random.rand(), torch.rand(3).tolist(),
            torch.rand(3, generator=batches).tolist()]  # fmt: skip


def test_every_cpu_generator_is_restored():
    batches = torch.Generator().manual_seed(5)
    states = generators.capture(batches)
    first = _draw(batches)
    _draw(batches)
    generators.restore(states, batches)
    assert _draw(batches) == first


class FakeCuda:
    """Stands in for CUDA's generators on a machine without a GPU."""

    def __init__(self, state: torch.Tensor) -> None:
        self.state, self.restored = state, None

    def accelerator(self) -> generators._Accelerator:
        return generators._Accelerator(lambda: True, lambda: [self.state.clone()], self.set)

    def set(self, states: list) -> None:
        self.restored = states


def test_cuda_generator_goes_through_the_checkpoint(tmp_path, monkeypatch):
    fake = FakeCuda(torch.arange(16, dtype=torch.uint8))
    monkeypatch.setitem(generators.ACCELERATORS, "cuda", fake.accelerator())
    experiment = tiny(iterations=2)
    flow = build_flow(experiment)
    optimizer = optim.make_optimizer(flow.parameters(), experiment.train, torch.device("cpu"))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: 1.0)
    batches = torch.Generator().manual_seed(1)
    history = History()
    path = tmp_path / train.CHECKPOINT
    best = flow.state_dict()
    train.save_checkpoint(path, experiment, flow, optimizer, schedule, batches, history, best)
    fake.state = torch.zeros(16, dtype=torch.uint8)  # the GPU draws on after the checkpoint
    assert train.resume(path, experiment, flow, optimizer, schedule, batches) is not None
    assert torch.equal(fake.restored[0], torch.arange(16, dtype=torch.uint8))


def test_a_gpu_state_that_cannot_be_restored_is_named(capsys, monkeypatch):
    def unavailable(states: list) -> None:
        raise RuntimeError("no CUDA GPUs are available")

    monkeypatch.setitem(
        generators.ACCELERATORS, "cuda", generators._Accelerator(lambda: False, list, unavailable)
    )
    batches = torch.Generator()
    states = {**generators.capture(batches), "cuda": [torch.zeros(16, dtype=torch.uint8)]}
    generators.restore(states, batches)
    assert "cuda generator state cannot be restored" in capsys.readouterr().err


# One GPU per job.


@pytest.fixture
def four_gpus(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(gpu_slots.ENV, "0,1,2,3")
    monkeypatch.setenv(gpu_slots.LOCK_DIR_ENV, str(tmp_path / "locks"))
    yield tmp_path / "locks"
    gpu_slots.release()


def test_jobs_get_distinct_gpus_and_a_released_one_is_reused(four_gpus, monkeypatch):
    assert gpu_slots.claim(1) == ["0"]
    assert gpu_slots.ENV in gpu_slots.os.environ and gpu_slots.os.environ[gpu_slots.ENV] == "0"
    # A second job on the same machine: its own process, so its own environment.
    monkeypatch.setenv(gpu_slots.ENV, "0,1,2,3")
    held = gpu_slots._held.copy()
    gpu_slots._held.clear()
    assert gpu_slots.claim(2) == ["1", "2"]
    gpu_slots.release()  # the second job ends
    gpu_slots._held.extend(held)
    monkeypatch.setenv(gpu_slots.ENV, "0,1,2,3")
    other = gpu_slots._try_lock("1")
    assert other is not None  # GPU 1 was given back
    other.close()
    assert gpu_slots._try_lock("0") is None  # GPU 0 is still held by the first job


def test_no_gpu_asked_or_a_scheduler_choice_leaves_the_devices_alone(four_gpus, monkeypatch):
    assert gpu_slots.claim(0) == []
    assert gpu_slots.os.environ[gpu_slots.ENV] == "0,1,2,3"
    monkeypatch.setenv(gpu_slots.ENV, "3")  # e.g. SLURM gave this job GPU 3
    assert gpu_slots.claim(1) == ["3"]
    assert not list(four_gpus.glob("*.lock"))  # nothing to choose, nothing locked


def test_train_command_claims_its_gpu_before_training(four_gpus, tmp_path):
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text("model: {method: nice, couplings: 2, hidden: [8]}\n")
    sets = ["train.iterations=2", "train.eval_every=1", "data.train_size=200",
            "data.val_size=100", "data.test_size=100", "eval.sample_count=10", "device=cpu"]  # fmt: skip
    args = ["train", "--config", str(config_file), "--out", str(tmp_path / "run"), "--gpus", "1"]
    assert cli.main([*args, *[f"--set={s}" for s in sets], "--no-progress"]) == 0
    assert gpu_slots.os.environ[gpu_slots.ENV] == "0"
    assert (four_gpus / "gpu-0.lock").exists()


# gpu-check's parts.


def test_the_tests_and_gpu_check_agree_on_the_device_variable():
    assert gpu_check.DEVICE_ENV == DEVICE_ENV


def test_log_prob_agreement_of_a_device_with_itself_is_exact():
    result = gpu_check.log_prob_agreement("cpu", gpu_check.TOY_CONFIGS / "realnvp.yaml", 64)
    assert result["ok"] and result["max_abs_difference"] == 0.0


def test_determinism_of_a_short_run(tmp_path):
    result = gpu_check.determinism("cpu", "nice", tmp_path)
    assert result["ok"] and result["identical_weights"] and result["identical_metrics"]


def test_paper_cost_projects_the_budget_and_the_report_renders(tmp_path):
    path = gpu_check.TOY_CONFIGS / "nice.yaml"  # no MNIST files needed; the same code path
    cost = gpu_check.paper_cost("cpu", path, seeds=3, iterations=1)
    expected = cost["seconds_per_iteration"] * cost["iterations"] * 3 / 3600
    assert cost["projected_hours"] == pytest.approx(expected) and expected > 0
    report = {
        "devices": ["cpu", "cuda"],
        "tests": [{"device": "cpu", "passed": 3, "failed": 0, "ok": True, "seconds": 1.0}],
        "agreement": [gpu_check.log_prob_agreement("cpu", gpu_check.TOY_CONFIGS / "nice.yaml")],
        "determinism": [
            {
                "method": "nice",
                "test_nll": 2.9,
                "identical_metrics": True,
                "identical_weights": True,
                "ok": True,
            }
        ],
        "paper_cost": [cost],
        "paper_profile_gpu_hours": cost["projected_hours"],
        "seconds": 12.0,
        "provenance": {
            "commit": "abc",
            "dirty": False,
            "device": {"type": "cuda", "name": "X"},
            "versions": {"torch": "2.14.1"},
            "precision": {"effective": "float32"},
        },
    }
    text = gpu_check.markdown(report)
    assert "config/experiments/toy/nice.yaml" in text and "projected GPU-hours" in text
    cpu_only = {key: report[key] for key in ("devices", "tests", "seconds", "provenance")}
    assert "**not checked**" in gpu_check.markdown(cpu_only)


def test_report_readme_says_whether_the_gpu_path_was_checked(tmp_path, monkeypatch):
    from replication.report import readme

    monkeypatch.setattr(readme, "GPU_CHECK", tmp_path / "gpu-check" / "gpu_check.md")
    assert "No GPU check recorded" in readme._gpu_check(tmp_path / "report")[0]
    readme.GPU_CHECK.parent.mkdir()
    cpu_only = {"devices": ["cpu"], "seconds": 1.0, "tests": [], "provenance": {
        "commit": "abc", "dirty": True, "device": {"type": "cpu", "name": "x86_64"},
        "versions": {"torch": "2.14.1"}, "precision": {"effective": "float32"}}}  # fmt: skip
    readme.GPU_CHECK.write_text(gpu_check.markdown(cpu_only))
    readme.GPU_CHECK.with_suffix(".json").write_text(json.dumps(cpu_only))
    line = readme._gpu_check(tmp_path / "report")[0]
    assert "(../gpu-check/gpu_check.md)" in line and "not verified yet" in line


def test_gpu_check_writes_into_a_folder(tmp_path):
    (tmp_path / "gpu-check").mkdir()
    cli._check_outputs(
        cli._parser().parse_args(["gpu-check", "--out", str(tmp_path / "gpu-check")])
    )
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="--out"):
        cli._check_outputs(cli._parser().parse_args(["gpu-check", "--out", str(tmp_path / "file")]))
