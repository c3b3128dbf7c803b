"""Bad input of every kind, tried as a careless user or an attacker would: each case must end
with exit code 2 and a message naming the key or the path at fault, no traceback, and nothing
written. The cases call the command line's ``main`` in-process, so the table runs in seconds.

Kinds: experiment configs (YAML text), ``--set`` overrides, MNIST settings, pipeline profiles,
output folders, weights and checkpoints read by the report and checks, and data files
(MNIST's raw files, metrics, summaries, entropies, check records).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import yaml

from replication.__main__ import main

ROOT = Path(__file__).resolve().parent.parent
TOY = "config/experiments/toy/ffjord.yaml"  # ODE options and solvers as well as training ones
MNIST = "config/experiments/mnist/nice-cpu.yaml"
MNIST_SMALL = ("data.mnist.image_size=7", "model.hidden=[8]")


@dataclass(frozen=True)
class Case:
    """``argv`` with ``{tmp}`` for the case's folder; ``files`` written there first."""

    argv: tuple[str, ...]
    message: str  # the key or path the error must name
    files: dict[str, str | bytes] = field(default_factory=dict)


def train(*overrides: str, config: str = TOY, out: str = "{tmp}/out") -> tuple[str, ...]:
    return ("train", "--config", config, "--out", out, *[f"--set={o}" for o in overrides])


def config_file(text: str, message: str) -> Case:
    return Case(train(config="{tmp}/bad.yaml"), message, {"bad.yaml": text})


CONFIG_FILES = [
    config_file("model: {method: maf}\n", "model.method: unknown method 'maf'"),
    config_file("model: {}\n", "'model' section with a 'method'"),
    config_file("train: {lr: 1.0e-3}\n", "'model' section with a 'method'"),
    config_file("- model\n", "a config must be a mapping"),
    config_file("model: [\n", "is not valid YAML"),
    config_file("model: {method: nice}\nmodel: {method: glow}\n", "duplicate key 'model'"),
    config_file("model: {method: nice}\ntrain: {lr: 1, lr: 2}\n", "duplicate key 'lr'"),
    config_file("model: {method: nice}\ntrian: {}\n", "unknown key 'trian'"),
    config_file("model: {method: nice}\ntrain: 5\n", "train: expected a mapping"),
    config_file("model: {method: nice}\ntrain: {lr: .nan}\n", "train.lr"),
    config_file("model: {method: nice}\ntrain: {lr: -.inf}\n", "train.lr"),
    config_file("model: {method: nice, depth: 3}\n", "unknown key 'model.depth'"),
    config_file("model: {method: nice, couplings: ten}\n", "model.couplings: expected int"),
    config_file("model: {method: nice, couplings: 0}\n", "model.couplings must be"),
    config_file("model: {method: nice, hidden: 64}\n", "model.hidden: expected a list"),
    config_file("model: {method: nice, base: cauchy}\n", "model.base"),
    config_file("model: {method: glow, steps: -1}\n", "model.steps must be"),
    config_file("model: {method: cnf, units: 0}\n", "model.units must be"),
    config_file("model: {method: rnode, kinetic_weight: -0.1}\n", "model.kinetic_weight must be"),
    config_file("model: {method: ffjord}\ndata: {name: spiral}\n", "data.name: unknown dataset"),
    config_file("model: {method: ffjord}\ndata: {test_size: 0}\n", "data.test_size must be"),
    config_file("model: {method: ffjord}\nseed: -1\n", "seed must be"),
    config_file("model: {method: ffjord}\nseed: 1.5\n", "seed: expected int"),
    config_file("model: {method: ffjord}\ndevice: tpu\n", "device: unknown device 'tpu'"),
    config_file("model: {method: ffjord}\nthreads: 0\n", "threads must be"),
    config_file("model: {method: ffjord}\neval: {sample_count: 0}\n", "eval.sample_count"),
    Case(train(config="{tmp}/absent.yaml"), "config file not found: {tmp}/absent.yaml"),
]

OVERRIDES = [
    Case(train(assignment), message)
    for assignment, message in [
        ("eval.sample_count=0", "eval.sample_count must be"),
        ("eval.sample_count=-5", "eval.sample_count must be"),
        ("eval.batch_size=0", "eval.batch_size must be"),
        ("eval.batch_size=-1", "eval.batch_size must be"),
        ("eval.batch_size=.nan", "eval.batch_size: expected int"),
        ("train.lr=.nan", "train.lr must be a finite number > 0"),
        ("train.lr=.inf", "train.lr must be a finite number > 0"),
        ("train.lr=0", "train.lr must be a finite number > 0"),
        ("train.lr=-1e-3", "train.lr must be a finite number > 0"),
        ("train.lr=1e400", "train.lr must be a finite number"),
        ("train.lr=abc", "train.lr: expected float"),
        ("train.lr=true", "train.lr: expected float"),
        ("train.lr=[1]", "train.lr: expected float"),
        ("train.weight_decay=-1", "train.weight_decay must be"),
        ("train.weight_decay=.nan", "train.weight_decay must be"),
        ("train.grad_clip=-1", "train.grad_clip must be"),
        ("train.grad_clip=0", "train.grad_clip must be"),
        ("train.grad_clip=.inf", "train.grad_clip must be"),
        ("train.warmup_iterations=-10", "train.warmup_iterations must be"),
        ("train.iterations=0", "train.iterations must be"),
        ("train.iterations=1e3", "train.iterations: expected int"),
        ("train.iterations=99999999999999999999999", "train.iterations must"),
        ("train.batch_size=0", "train.batch_size must be"),
        ("train.eval_every=0", "train.eval_every must be"),
        ("train.lr_decay=linear", "train.lr_decay"),
        ("train.iters=5", "unknown key 'train.iters'"),
        ("model.hidden=[0]", "model.hidden[0] must be"),
        ("model.hidden=[-4]", "model.hidden[0] must be"),
        ("model.hidden=[64, .nan]", "model.hidden[1]: expected int"),
        ("model.max_nfe=0", "model.max_nfe must be"),
        ("model.max_nfe=-3", "model.max_nfe must be"),
        ("model.end_time=.nan", "model.end_time must be a finite number > 0"),
        ("model.end_time=0", "model.end_time must be"),
        ("model.end_time=-1", "model.end_time must be"),
        ("model.blocks=0", "model.blocks must be"),
        ("model.kinetic_weight=.nan", "model.kinetic_weight must be"),
        ("model.jacobian_weight=-1", "model.jacobian_weight must be"),
        ("model.eval_solver.atol=.nan", "model.eval_solver.atol must be"),
        ("model.eval_solver.rtol=0", "model.eval_solver.rtol must be"),
        ("model.train_solver.atol=-1e-5", "model.train_solver.atol must be"),
        ("model.train_solver.rtol=.inf", "model.train_solver.rtol must be"),
        ("model.eval_solver.method=euler", "model.eval_solver: fixed-grid solver 'euler'"),
        ("model.train_solver.method=magic", "model.train_solver: unknown ODE solver 'magic'"),
        ("model.train_solver.step_size=0.2", "model.train_solver: adaptive solver 'dopri5'"),
        ("model.train_solver.method=rk4", "model.train_solver: fixed-grid solver 'rk4'"),
        ("train.patience=0", "train.patience"),
        ("train.patience=10", "train.patience must be at least train.eval_every = 100"),
        ("data.train_draws=sometimes", "data.train_draws"),
        ("model.eval_solver={method: rk4, step_size: 0}", "model.eval_solver.step_size"),
        ("model.eval_solver={method: rk4, step_size: 2}", "model.eval_solver.step_size"),
        ("model.divergence=guess", "model.divergence"),
        ("model.method=maf", "model.method: unknown method 'maf'"),
        ("model.couplings=3", "unknown key 'model.couplings'"),
        ("seed=1180591620717411303424", "seed must be an integer in [0, 9223372036854775807]"),
        ("seed=-1", "seed must be"),
        ("threads=-2", "threads must be"),
        ("device=tpu", "device: unknown device 'tpu'"),
        ("data.name=mnits", "data.name: unknown dataset 'mnits'"),
        ("data.train_size=0", "data.train_size must be"),
        ("data.val_size=-1", "data.val_size must be"),
        ("train.lr", "override 'train.lr' must look like section.key=value"),
        ("train.lr=[", "override 'train.lr=[' is not valid YAML"),
        ("seed.value=3", "seed: expected int, got dict"),
    ]
]

MNIST_SETTINGS = [
    Case(train(*MNIST_SMALL, assignment, config=MNIST), message)
    for assignment, message in [
        ("data.mnist.image_size=5", "data.mnist.image_size must divide 28"),
        ("data.mnist.val_size=0", "data.mnist.val_size must lie in"),
        ("data.mnist.val_size=60000", "data.mnist.val_size must lie in"),
        ("data.mnist.train_subset=0", "data.mnist.train_subset must lie in"),
        ("data.mnist.test_subset=10001", "data.mnist.test_subset must lie in"),
        ("data.mnist.eval_noise_draws=0", "data.mnist.eval_noise_draws must be"),
        ("data.mnist.eval_dequantization=none", "data.mnist.eval_dequantization"),
        ("model.logit_alpha=0.5", "model.logit_alpha must be a finite number in (0, 0.5)"),
        ("model.logit_alpha=.nan", "model.logit_alpha must be a finite number in (0, 0.5)"),
        ("model.partition=random", "model.partition"),
    ]
]


def profile_case(edit: str, message: str) -> Case:
    return Case(("check-profile", "{tmp}/profile.yaml"), message, {"profile.yaml": edit})


def edited_smoke(change: object) -> str:
    profile = yaml.safe_load((ROOT / "config" / "profiles" / "smoke.yaml").read_text())
    change(profile)
    return yaml.safe_dump(profile)


def _drop(key: str) -> object:
    return lambda profile: profile.pop(key)


def _family(key: str, value: object, family: str = "toy") -> object:
    return lambda profile: profile["families"][family].__setitem__(key, value)


PROFILES = [
    profile_case(
        edited_smoke(lambda p: p["families"]["toy"].pop("seeds")),
        "families.toy: 'seeds' is a required property",
    ),
    profile_case(edited_smoke(_drop("checks")), "'checks' is a required property"),
    profile_case(
        edited_smoke(lambda p: p["families"]["mnist"].pop("threads")),
        "families.mnist: 'threads' is a required property",
    ),
    profile_case(edited_smoke(_family("seeds", [-1])), "families.toy.seeds.0"),
    profile_case(edited_smoke(_family("seeds", [0, 0])), "families.toy.seeds: [0, 0]"),
    profile_case(edited_smoke(_family("device", "gpu")), "families.toy.device: 'gpu'"),
    profile_case(edited_smoke(lambda p: p.__setitem__("device", "cpu")), "'device' was unexpected"),
    profile_case(edited_smoke(_family("threads", 0)), "families.toy.threads"),
    profile_case(edited_smoke(_family("budget", "huge")), "families.toy.budget"),
    profile_case(edited_smoke(_family("overrides", ["train.iters=5"])), "'train.iters'"),
    profile_case(edited_smoke(_family("overrides", ["train.lr=.nan"])), "train.lr must be"),
    profile_case(
        edited_smoke(_family("overrides", ["model.max_nfe=100"], "mnist")),
        "unknown key 'model.max_nfe'",  # a family override that some of its methods lack
    ),
    profile_case(edited_smoke(_family("overrides", ["no equals sign"])), "families.toy.overrides"),
    profile_case(
        edited_smoke(_family("methods", [{"method": "nice", "config": "nope.yaml"}])),
        "config file not found: nope.yaml",
    ),
    profile_case(
        edited_smoke(
            _family("methods", [{"method": "nice", "config": TOY, "overrides": ["model.x=1"]}])
        ),
        "unknown key 'model.x'",
    ),
    profile_case(
        edited_smoke(_family("methods", [{"method": "glow", "config": TOY}])),
        "names method 'glow', but its config",  # the entry and its experiment file disagree
    ),
    profile_case(
        edited_smoke(_family("methods", [{"method": "flowmatch", "config": TOY}])),
        "unknown method 'flowmatch'; valid choices: cnf, ffjord",
    ),
    profile_case("profile: smoke\nprofile: again\n", "duplicate key 'profile'"),
    profile_case("profile: [\n", "is not valid YAML"),
    Case(("check-profile", "{tmp}/absent.yaml"), "profile file not found: {tmp}/absent.yaml"),
]

OUTPUT_FOLDERS = [
    Case(train(out="{tmp}/file"), "--out {tmp}/file is a file", {"file": "not a folder"}),
    Case(train(out="{tmp}/file/run"), "lies under {tmp}/file, which is a file", {"file": "x"}),
    Case(train(out="{tmp}/file/a/b"), "lies under {tmp}/file, which is a file", {"file": "x"}),
    Case(train(out="/proc/version/run"), "lies under /proc/version"),
    Case(train(out="/proc/no-such-folder/run"), "--out /proc/no-such-folder/run cannot be"),
    Case(
        train(out="{tmp}/done"),
        "holds a finished run of another configuration",
        {"done/metrics.json": json.dumps({"config_digest": "0123456789abcdef"})},
    ),
    Case(
        train(out="{tmp}/done"),
        "holds a finished run of another configuration (config digest unreadable",
        {"done/metrics.json": "{not json"},
    ),
]


def _weights(config: object, state: object = None) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save({"config": config, "state_dict": state or {}}, buffer)
    return buffer.getvalue()


_NAN_CONFIG = {"model": {"method": "nice"}, "train": {"lr": float("nan")}}
WEIGHTS = [
    Case((command, "--run", "{tmp}/run", *out), message, {"run/model.pt": content})
    for command, out in [
        ("density", ("--out", "{tmp}/d.npz")),
        ("samples", ("--out", "{tmp}/s.png")),
    ]
    for content, message in [
        (b"", "weights file {tmp}/run/model.pt is damaged"),
        (b"\x80\x04\x95garbage", "weights file {tmp}/run/model.pt is damaged"),
        (b"PK\x03\x04" + b"\x00" * 40, "weights file {tmp}/run/model.pt is damaged"),
        (_weights(_NAN_CONFIG), "train.lr must be a finite number"),
    ]
] + [
    Case(
        ("density", "--run", "{tmp}/empty", "--out", "{tmp}/d.npz"),
        "weights not found",
        {"empty/metrics.json": "{}"},
    ),
    Case(("samples", "--run", "{tmp}/empty", "--count", "0"), "--count: must be an integer"),
]

_RAW = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte")  # fmt: skip
_TOY_METRICS = json.dumps({"dataset": "8gaussians", "method": "nice", "seed": 0, "status": "ok"})
COLLECT_OUT = ("--out", "{tmp}/all.json", "--report", "{tmp}/checks.md")
_REPORT = ("--citations", "config/citations.yaml", "--out-dir", "{tmp}/report")


def summarize(*args: str) -> tuple[str, ...]:
    return ("summarize", "--profile", "p", "--out", "{tmp}/s.csv", *args)


def check_run(*args: str) -> tuple[str, ...]:
    return ("checks", "run", "--run", "{tmp}/run", "--entropy", "{tmp}/e.json", *args,
            "--out", "{tmp}/c.json")  # fmt: skip


DATA_FILES = [
    Case(
        train(*MNIST_SMALL, "data.mnist.root={tmp}/data", config=MNIST),
        "MNIST file {tmp}/data/MNIST/raw/train-images-idx3-ubyte is missing",
    ),
    Case(
        train(*MNIST_SMALL, "data.mnist.root={tmp}/data", config=MNIST),
        "MNIST file {tmp}/data/MNIST/raw/train-images-idx3-ubyte is corrupted",
        {f"data/MNIST/raw/{name}": b"\x00" * 64 for name in _RAW},
    ),
    Case(
        summarize("--budget", "toy=reduced", "{tmp}/m.json"),
        "metrics file {tmp}/m.json cannot be read",
        {"m.json": "{"},
    ),
    Case(
        summarize("--budget", "toy=reduced", "{tmp}/m.json"),
        "{tmp}/m.json is not a run's metrics file",
        {"m.json": "[1, 2]"},
    ),
    Case(
        summarize("--budget", "toy=reduced", "{tmp}/absent.json"),
        "metrics file not found: {tmp}/absent.json",
    ),
    Case(summarize("--budget", "toy=huge", "{tmp}/m.json"), "--budget 'toy=huge'"),
    Case(summarize("{tmp}/m.json"), "no budget given for family 'toy'", {"m.json": _TOY_METRICS}),
    Case(
        ("tables", "--summary", "{tmp}/absent.csv", "--entropy", "{tmp}/e.json", *_REPORT),
        "summary file not found: {tmp}/absent.csv",
    ),
    Case(
        ("tables", "--summary", "{tmp}/s.csv", "--entropy", "{tmp}/e.json", *_REPORT),
        "{tmp}/s.csv lacks the summary columns",
        {"s.csv": "a,b\n1,2\n"},
    ),
    Case(
        ("checks", "collect", "{tmp}/c.json", "--profile", "p", *COLLECT_OUT),
        "check records file {tmp}/c.json cannot be read",
        {"c.json": "[{"},
    ),
    Case(("checks", "verify", "{tmp}/absent.json"), "check records file not found"),
    Case(
        check_run(),
        "metrics file {tmp}/run/metrics.json cannot be read",
        {"run/metrics.json": "{oops", "e.json": "[]"},
    ),
    Case(
        check_run(),
        "entropy file {tmp}/e.json cannot be read",
        {"run/metrics.json": _TOY_METRICS, "e.json": "nan]"},
    ),
    Case(
        check_run(),
        "{tmp}/e.json has no entropy of '8gaussians'",
        {"run/metrics.json": _TOY_METRICS, "e.json": "[]"},
    ),
    Case(check_run("--grid", "3"), "--grid: must be an integer >= 50"),
    Case(("bench", "--iterations", "0", "--out", "{tmp}/bench"), "--iterations: must be"),
    Case(("bench", "--repeats", "-1", "--out", "{tmp}/bench"), "--repeats: must be"),
    Case(("bench", "--warmup", "x", "--out", "{tmp}/bench"), "--warmup: expected an integer"),
    Case(("bench", "--out", "{tmp}/file"), "--out {tmp}/file is a file", {"file": "x"}),
    Case(("bench", "--out", "{tmp}/file/b"), "lies under {tmp}/file", {"file": "x"}),
    Case(("bench", "{tmp}/absent.yaml", "--out", "{tmp}/b"), "not found: {tmp}/absent.yaml"),
    Case(
        ("density", "--dataset", "moons", "--out", "{tmp}/file/d.npz"),
        "--out {tmp}/file/d.npz lies under {tmp}/file",
        {"file": "x"},
    ),
    Case(("density", "--dataset", "moons", "--out", "{tmp}"), "--out {tmp} is a folder"),
    Case(
        ("entropy", "moons", "--out", "{tmp}/file/e.json"), "lies under {tmp}/file", {"file": "x"}
    ),
    Case(
        (
            "tables",
            "--summary",
            "{tmp}/s.csv",
            "--entropy",
            "{tmp}/e.json",
            "--citations",
            "config/citations.yaml",
            "--out-dir",
            "{tmp}/file",
        ),
        "--out-dir {tmp}/file is a file",
        {"file": "x"},
    ),
    Case(
        (
            "checks",
            "collect",
            "{tmp}/c.json",
            "--profile",
            "p",
            "--out",
            "{tmp}/all.json",
            "--report",
            "{tmp}/file/checks.md",
        ),
        "--report {tmp}/file/checks.md lies under {tmp}/file",
        {"file": "x", "c.json": "[]"},
    ),
    Case(("checks", "closed-form", "--out", "{tmp}/file/c.json"), "lies under", {"file": "x"}),
]

CASES = CONFIG_FILES + OVERRIDES + MNIST_SETTINGS + PROFILES + OUTPUT_FOLDERS + WEIGHTS
CASES += DATA_FILES


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``folder`` with its size and modification time."""
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
    }


def test_there_are_at_least_a_hundred_cases():
    assert len(CASES) >= 100


@pytest.mark.parametrize("case", CASES, ids=lambda case: " ".join(case.argv)[:90])
def test_bad_input_exits_2_naming_the_problem_and_writes_nothing(
    case, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(ROOT)  # configs and profiles name files relative to the repository
    for name, content in case.files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = snapshot(tmp_path)
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in case.argv]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert case.message.replace("{tmp}", str(tmp_path)) in err
    assert "Traceback" not in err
    assert snapshot(tmp_path) == before
