"""Configs are validated before any work: every mistake is named with the valid choices."""

from __future__ import annotations

from pathlib import Path

import pytest

from replication import config
from replication.typed import ConfigError


def parse(**sections):
    return config.parse({"model": {"method": "realnvp"}, **sections})


def test_defaults_fill_everything():
    resolved = parse().to_dict()
    assert resolved["model"] == {"method": "realnvp", "couplings": 10, "hidden": [64, 64]}
    assert resolved["data"]["name"] == "8gaussians" and resolved["train"]["iterations"] > 0


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"model": {"method": "maf"}},
            r"unknown method 'maf'; valid choices: .*glow.*nice.*realnvp",
        ),
        ({"model": {"method": "realnvp", "depth": 3}}, r"unknown key 'model.depth'.*couplings"),
        ({"model": {"method": "realnvp", "couplings": "ten"}}, r"model.couplings: expected int"),
        ({"model": {}}, r"'model' section with a 'method'"),
        (
            {"model": {"method": "nice"}, "data": {"name": "spiral"}},
            r"unknown dataset 'spiral'.*moons",
        ),
        ({"model": {"method": "nice"}, "train": {"lr": "fast"}}, r"train.lr: expected float"),
        ({"model": {"method": "nice"}, "trian": {}}, r"unknown key 'trian'; valid keys: .*train"),
        ({"model": {"method": "nice"}, "train": {"iterations": 0}}, r"train.iterations must be"),
        ({"model": {"method": "nice"}, "device": "tpu"}, r"unknown device 'tpu'"),
        (
            {"model": {"method": "nice", "base": "cauchy"}},
            r"model.base.*valid choices: logistic, normal",
        ),
    ],
)
def test_bad_configs_are_named(raw, message):
    with pytest.raises(ConfigError, match=message):
        config.parse(raw)


def test_yaml_reads_scientific_floats_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: {method: glow}\ntrain: {lr: 1e-3}\n")
    loaded = config.load(path, ("train.lr=2e-4", "model.steps=3", "data.name=moons"))
    assert loaded.train.lr == pytest.approx(2e-4)
    assert loaded.model.options.steps == 3 and loaded.data.name == "moons"


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*absent.yaml"):
        config.load(tmp_path / "absent.yaml")


def test_digest_tracks_every_value():
    assert parse().digest() == parse().digest()
    assert parse().digest() != parse(seed=1).digest()


def test_every_shipped_experiment_config_is_valid():
    from pathlib import Path

    files = sorted(Path(__file__).parent.parent.joinpath("config", "experiments").rglob("*.yaml"))
    assert files
    for path in files:
        config.load(path)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lr=.nan", r"train.lr must be a finite number > 0, got nan"),
        ("train.lr=.inf", r"train.lr must be a finite number > 0, got inf"),
        ("train.grad_clip=0", r"train.grad_clip must be a finite number > 0 or null, got 0"),
        ("model.eval_solver.atol=.nan", r"model.eval_solver.atol must be a finite number > 0"),
        ("model.train_solver.rtol=-1", r"model.train_solver.rtol must be a finite number > 0"),
        ("model.max_nfe=0", r"model.max_nfe must be an integer >= 1, got 0"),
        ("model.hidden=[64, 0]", r"model.hidden\[1\] must be an integer >= 1, got 0"),
        ("seed=1180591620717411303424", r"seed must be an integer in \[0, 9223372036854775807\]"),
    ],
)
def test_every_number_is_checked_with_its_key_and_range(tmp_path, override, message):
    path = tmp_path / "c.yaml"
    path.write_text("model: {method: ffjord}\n")
    with pytest.raises(ConfigError, match=message):
        config.load(path, (override,))


def test_a_key_written_twice_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: {method: nice}\ntrain:\n  lr: 1.0e-3\n  lr: 2.0e-3\n")
    with pytest.raises(ConfigError, match=r"(?s)duplicate key .lr.*line 4"):
        config.load(path)


def test_reduced_mnist_configs_share_one_protocol():
    """The reduced MNIST table compares its six rows: same images, dequantization, splits."""
    from replication.flows import methods

    load = config.load
    configs = {
        path.name: load(path) for path in Path("config/experiments/mnist").glob("*-cpu.yaml")
    }
    assert {name.removesuffix("-cpu.yaml") for name in configs} == set(methods("image"))
    protocols = {name: experiment.data for name, experiment in configs.items()}
    assert len(set(protocols.values())) == 1, protocols
    (protocol,) = set(protocols.values())
    assert protocol.mnist.image_size == 14 and protocol.mnist.eval_dequantization == "noise"


def test_continuous_flows_train_as_their_papers():
    """FFJORD and CNF train with adaptive dopri5, RNODE on its paper's rk4 grid (step 0.25),
    on toy and reduced MNIST; every reduced config stops by convergence (train.patience)."""
    load = config.load
    for folder, suffix in (("toy", ""), ("mnist", "-cpu")):
        for method in ("cnf", "ffjord", "rnode"):
            experiment = load(Path(f"config/experiments/{folder}/{method}{suffix}.yaml"))
            solver = experiment.model.options.train_solver
            if method == "rnode":
                assert (solver.method, solver.step_size) == ("rk4", 0.25)
            else:
                assert solver.method == "dopri5" and solver.atol <= 1e-3
            evaluation = experiment.model.options.eval_solver
            assert evaluation.method == "dopri5" and evaluation.atol <= 1e-5
        for path in Path(f"config/experiments/{folder}").glob(f"*{suffix}.yaml"):
            if path.name.startswith("ffjord-reference") or "paper" in path.name:
                assert folder == "mnist" or load(path).data.train_draws == "fresh", path
                continue
            experiment = load(path)
            assert experiment.train.patience is not None, path
            if folder == "toy":
                assert experiment.data.train_draws == "fresh", path
    for path in Path("config/experiments/toy/paper").glob("*.yaml"):  # FFJORD's protocol too
        assert load(path).data.train_draws == "fresh", path
