"""Experiment configuration: a small YAML file of what differs from the defaults, parsed into
frozen dataclasses and validated before any work starts.

A config has five sections besides ``seed``, ``device``, ``threads`` and ``precision``::

    seed: 0
    data:  {name: 8gaussians}                 # DataConfig
    model: {method: realnvp, couplings: 10}   # method name + that method's options
    train: {iterations: 5000, lr: 1.0e-3}     # TrainConfig
    eval:  {batch_size: 5000}                 # EvalConfig

Unknown keys, methods and datasets, wrong types and missing files raise :class:`ConfigError`,
whose message names the problem and the valid choices.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from replication.datasets.options import DataConfig
from replication.flows import methods as flow_methods
from replication.flows import options as method_options
from replication.precision import Precision
from replication.typed import (
    INT64,
    Bounds,
    ConfigError,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    choice_error,
    from_mapping,
    to_mapping,
)
from replication.yamlfile import load_yaml_text

# Run seeds: torch takes any 64-bit seed, and derived seeds are reduced modulo 2**63.
Seed = Annotated[int, Bounds(low=0, high=INT64 - 1)]


@dataclass(frozen=True)
class TrainConfig:
    iterations: PositiveInt = 5000
    batch_size: PositiveInt = 512
    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 0.0
    warmup_iterations: NonNegativeInt = 0  # linear learning-rate warm-up from 0
    # "exponential": the rate is divided by lr_decay_factor after every update, down to lr_floor
    # (NICE's schedule); "cosine": down to zero at the last iteration.
    lr_decay: Literal["none", "cosine", "exponential"] = "none"
    grad_clip: PositiveFloat | None = None  # max gradient norm; None disables clipping
    eval_every: PositiveInt = 500  # validate (and checkpoint) every this many iterations
    # Stop once the validation NLL has not improved by more than its standard error for this
    # many iterations (converged); ``iterations`` is then the cap. None: train to the cap.
    patience: PositiveInt | None = None
    # Added with NICE's protocol (see replication/optim.py); at these defaults a config means
    # what it meant before they existed, and its digest is unchanged (LATER_DEFAULTS).
    optimizer: Literal["adam", "adamax", "rmsprop"] = "adam"
    momentum: float = 0.0  # rmsprop only: the momentum reached at the end of momentum_ramp
    momentum_ramp: tuple[int, int] = (0, 0)  # iterations over which momentum rises from 0
    lr_decay_factor: float = 1.0
    lr_floor: float = 0.0

    def __post_init__(self) -> None:
        for problem, found in self._problems().items():
            if found:
                raise ConfigError(problem)

    def _problems(self) -> dict[str, bool]:
        """Each range the later options must lie in, and whether they do not (NaN and inf
        never do); the annotated fields are checked when the config is read."""
        finite = {key: math.isfinite(getattr(self, key)) for key in _FLOATS}
        start, end = self.momentum_ramp
        return {
            f"train.momentum must lie in [0, 1), got {self.momentum}": not (
                finite["momentum"] and 0 <= self.momentum < 1
            ),
            f"train.momentum applies to train.optimizer rmsprop only, got {self.optimizer!r} "
            f"with momentum {self.momentum}": self.momentum > 0 and self.optimizer != "rmsprop",
            f"train.momentum_ramp must be [start, end] with 0 <= start <= end, "
            f"got {list(self.momentum_ramp)}": not 0 <= start <= end,
            f"train.lr_decay_factor must be a finite number >= 1, got {self.lr_decay_factor}": not (
                finite["lr_decay_factor"] and self.lr_decay_factor >= 1
            ),
            f"train.lr_floor must lie in [0, train.lr = {self.lr}], got {self.lr_floor}": not (
                finite["lr_floor"] and 0 <= self.lr_floor <= self.lr
            ),
            f"train.patience must be at least train.eval_every = {self.eval_every} (progress "
            f"is only seen at validations), got {self.patience}": self.patience is not None
            and self.patience < self.eval_every,
        }


_FLOATS = ("momentum", "lr_decay_factor", "lr_floor")


@dataclass(frozen=True)
class EvalConfig:
    batch_size: PositiveInt = 5000
    sample_count: PositiveInt = 1000  # samples drawn to time sampling


@dataclass(frozen=True)
class ModelConfig:
    """A method name and its options, already converted to the method's options dataclass."""

    method: str
    options: Any


@dataclass(frozen=True)
class RunSettings:
    """Every section but ``model``, whose options can only be checked once the data is known."""

    seed: Seed = 0
    device: str = "auto"  # auto (CUDA when present), cpu, cuda or cuda:N
    threads: PositiveInt | None = 1  # torch intra-op threads; None keeps torch's default
    # float32: IEEE float32 everywhere; tf32: TensorFloat-32 allowed in CUDA matmuls and
    # convolutions (faster on Ampere-or-newer GPUs, ~1e-3 relative error). See precision.py.
    precision: Precision = "float32"
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


@dataclass(frozen=True, kw_only=True)
class ExperimentConfig(RunSettings):
    model: ModelConfig

    def to_dict(self) -> dict:
        """The full resolved config, defaults included, as plain data."""
        resolved = to_mapping(self)
        resolved["model"] = {"method": self.model.method, **to_mapping(self.model.options)}
        return resolved

    def digest(self) -> str:
        """A short hash identifying this exact configuration."""
        return _hash(_without_later_defaults(self.to_dict()))

    def protocol_digest(self) -> str:
        """The digest of what a result depends on besides its seed: every value except
        :data:`NOT_PROTOCOL` (seed, device, threads, where the data lives). Two runs with the
        same protocol digest are seeds of one experiment; the MNIST verdict requires the
        run's to equal the paper config's."""
        resolved = _without_later_defaults(self.to_dict())
        for path in NOT_PROTOCOL:
            *parents, key = path
            node = resolved
            for parent in parents:
                node = node[parent]
            node.pop(key)
        return _hash(resolved)


# Options added after results were committed, at the values that keep the old behaviour: left
# out of the digests when they hold these values, so the committed runs keep their digests.
LATER_DEFAULTS: dict[tuple[str, ...], Any] = {
    ("train", "optimizer"): "adam",
    ("train", "momentum"): 0.0,
    ("train", "momentum_ramp"): [0, 0],
    ("train", "lr_decay_factor"): 1.0,
    ("train", "lr_floor"): 0.0,
    ("train", "patience"): None,
    ("data", "train_draws"): "fixed",
    ("model", "init_uniform"): None,
    ("precision",): "float32",  # IEEE float32, what every committed (CPU) run computed in
    # The step control of adaptive solves (flows/ode.py), FFJORD's at these values.
    **{
        ("model", phase, key): value
        for phase in ("train_solver", "eval_solver")
        for key, value in (
            ("norm", "max"),
            ("warm_start", False),
            ("land_on_end", False),
            ("implementation", "torchdiffeq"),
        )
    },
}
# Settings that change where and how fast a run goes, not what it computes.
NOT_PROTOCOL: tuple[tuple[str, ...], ...] = (
    ("seed",), ("device",), ("threads",), ("data", "mnist", "root"), ("data", "mnist", "download"),
)  # fmt: skip


def _without_later_defaults(resolved: dict) -> dict:
    for (*sections, key), value in LATER_DEFAULTS.items():
        node = resolved
        for section in sections:
            node = node.get(section) if isinstance(node, dict) else None
        if isinstance(node, dict) and key in node and node[key] == value:
            del node[key]
    return resolved


def _hash(resolved: dict) -> str:
    text = json.dumps(resolved, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


def parse(raw: dict) -> ExperimentConfig:
    """Validate a parsed YAML mapping into an :class:`ExperimentConfig`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"a config must be a mapping of sections, got {type(raw).__name__}")
    raw = dict(raw)
    model = raw.pop("model", None)
    if not isinstance(model, dict) or "method" not in model:
        raise ConfigError("the config needs a 'model' section with a 'method' key")
    settings = from_mapping(RunSettings, raw)
    if not _DEVICE.match(settings.device):
        raise ConfigError(
            f"device: unknown device {settings.device!r}; valid: auto, cpu, cuda, cuda:N, mps"
        )
    options = dict(model)
    method = options.pop("method")
    if method not in flow_methods():
        raise ConfigError(f"model.method: {choice_error('method', method, flow_methods())}")
    model_config = ModelConfig(method, method_options(method, settings.data.shape, options))
    return ExperimentConfig(model=model_config, **vars(settings))


def apply_override(raw: dict, assignment: str) -> dict:
    """Apply one ``--set section.key=value`` override (the value is parsed as YAML)."""
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r} must look like section.key=value")
    path, text = assignment.split("=", 1)
    keys = path.strip().split(".")
    node = raw
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {assignment!r}: {key!r} is not a section")
    node[keys[-1]] = load_yaml_text(text, f"override {assignment!r}")
    return raw


def load(path: str | Path, overrides: tuple[str, ...] = ()) -> ExperimentConfig:
    """Read, override and validate the config at ``path``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    raw = load_yaml_text(path.read_text(), str(path)) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections")
    for assignment in overrides:
        raw = apply_override(raw, assignment)
    try:
        return parse(raw)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
