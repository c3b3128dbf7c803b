"""One row per run: the numbers of every ``metrics.json`` of a profile, and where they came from.

The summary is the single table every report table is rendered from. It is written with
pandas so that ``pandas.read_csv`` gives back every number; a value that does not apply to a
run (bits/dim of a toy density, NFE of a discrete flow) is an empty cell. NFE columns hold the
end-of-training values (the mean over the last iterations, see :mod:`replication.metrics`);
``nfe_*_sd`` their standard deviation over all training iterations, ``train_nfe`` the mean
forward plus backward NFE per training iteration, ``val_nfe_first``/``val_nfe_last`` the
evaluation solver's NFE per validation batch at the first validation after iteration 0 and at
the last one, ``converged``, ``stop_reason``, ``patience``, ``iteration_cap`` and
``stopped_at`` the run's stopping rule and where it stopped (empty for runs recorded before it).
``target_nll`` is the time-to-target threshold of a toy run, the density's entropy H plus
:data:`TARGET_MARGIN` nats on the validation split, and ``seconds_to_target`` the training
seconds at the first validation whose NLL reached it (empty if none did, or without an entropy).
``overhead_seconds`` is what the run's job spent besides training iterations, validation and
test scoring (start-up, imports, loading and saving, a toy run's figure grid and checks): the
job's wall-clock from Snakemake's ``benchmark.tsv`` beside the metrics file, minus those
seconds (empty without that file, or when a resumed job's file covers only its last attempt).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from replication import atomic, config
from replication import status as run_status
from replication.datasets import toy2d
from replication.typed import ConfigError, read_json

COLUMNS: tuple[str, ...] = (
    "profile", "family", "dataset", "method", "seed", "status", "budget",
    "test_nll", "test_nll_se", "test_bpd", "test_bpd_se", "test_count",
    "nfe_forward", "nfe_backward", "test_nfe",
    "train_seconds", "seconds_per_iter", "params", "dims", "iterations",
    "commit", "dirty", "device", "precision", "versions", "config_digest", "metrics",
    "protocol_digest", "protocol",
    "converged", "stop_reason", "patience", "iteration_cap", "stopped_at",
    "nfe_forward_sd", "nfe_backward_sd", "train_nfe", "val_nfe_first", "val_nfe_last",
    "target_nll", "seconds_to_target", "overhead_seconds",
)  # fmt: skip

# Columns added with the convergence rule (issue 13): a summary written before them is still
# read, with these columns empty, so an old report re-renders (claims then say not testable).
LATER_COLUMNS = COLUMNS[COLUMNS.index("converged") :]


# Time to target (issue 13): validation NLL within this many nats of the density's entropy.
TARGET_MARGIN = 0.03

_TEST_FIELDS = ("test_nll", "test_nll_se", "test_bpd", "test_bpd_se", "test_count")


def family_of(dataset: str) -> str:
    """``toy`` for the toy 2D densities, else the dataset's own name (``mnist``)."""
    return "toy" if dataset in toy2d.NAMES else dataset


def _end(statistics: Mapping | None) -> float | None:
    """The end-of-training value of an NFE record ``{end, mean}``, or None."""
    return None if statistics is None else statistics.get("end")


def _sd(statistics: Mapping | None) -> float | None:
    """The standard deviation over training iterations of an NFE record, or None."""
    return None if statistics is None else statistics.get("sd")


def _train_nfe(metrics: Mapping) -> float | None:
    """Function evaluations per training iteration, forward plus backward (means over
    training); None for a discrete flow or a run recorded before the means were."""
    forward, backward = metrics.get("nfe_forward"), metrics.get("nfe_backward")
    if not forward or forward.get("mean") is None:
        return None
    return forward["mean"] + ((backward or {}).get("mean") or 0.0)


def _val_nfe(metrics: Mapping) -> tuple[float | None, float | None]:
    """``val_nfe`` at the first validation after iteration 0 and at the last validation."""
    points = [p for p in metrics.get("val_curve") or [] if p.get("iteration", 0) > 0]
    if not points:
        return None, None
    return points[0].get("val_nfe"), points[-1].get("val_nfe")


def seconds_to_target(metrics: Mapping, target: float | None) -> float | None:
    """Training seconds (``timing.val_train_seconds[i]``) at the first validation point
    ``val_curve[i]`` whose ``val_nll`` <= ``target``; None if none did or no target is given."""
    if target is None:
        return None
    seconds = (metrics.get("timing") or {}).get("val_train_seconds") or []
    for point, elapsed in zip(metrics.get("val_curve") or [], seconds, strict=False):
        if point.get("val_nll") is not None and point["val_nll"] <= target:
            return float(elapsed)
    return None


# Snakemake's benchmark of the job that wrote a run (rules/train.smk), beside its metrics file.
JOB_BENCHMARK = "benchmark.tsv"


def overhead_seconds(metrics: Mapping, metrics_path: Path) -> float | None:
    """The job's wall-clock minus its training-iteration, validation and test-scoring seconds;
    None without the job's benchmark file or when that is shorter than those seconds (a
    resumed job: Snakemake times only the attempt that finished)."""
    benchmark = metrics_path.parent / JOB_BENCHMARK
    timing = metrics.get("timing") or {}
    parts = [timing.get(key) for key in ("train_seconds", "validation_seconds", "eval_seconds")]
    if not benchmark.is_file() or parts[0] is None:
        return None
    wall = float(pd.read_csv(benchmark, sep="\t")["s"].iloc[0])
    overhead = wall - sum(part or 0.0 for part in parts)
    return overhead if overhead >= 0 else None


def _dims(metrics: Mapping) -> int | None:
    """Dimensions of one example: the recorded data shape, else 2 for a toy 2D density."""
    shape = metrics.get("data", {}).get("shape")
    if shape:
        return math.prod(shape)
    return 2 if metrics.get("data", {}).get("kind") == "toy2d" else None


def _device(provenance: Mapping) -> str:
    device = provenance.get("device") or {}
    kind, name = device.get("type", "unknown"), device.get("name")
    return f"{kind} ({name})" if name else kind


def _precision(provenance: Mapping) -> str:
    """The run's effective float32 precision; runs recorded before it was recorded ran with
    torch's defaults, which are IEEE float32 on a CPU (TF32 is a GPU feature)."""
    recorded = (provenance.get("precision") or {}).get("effective")
    if recorded:
        return recorded
    return "float32" if (provenance.get("device") or {}).get("type") == "cpu" else "unrecorded"


def _versions(provenance: Mapping) -> str:
    versions = provenance.get("versions") or {}
    return "; ".join(f"{package} {version}" for package, version in versions.items())


def _protocol_digest(metrics: Mapping) -> str | None:
    """The run's protocol digest, from the resolved config its metrics file records."""
    try:
        return config.parse(metrics["config"]).protocol_digest()
    except (KeyError, TypeError, ConfigError):
        return None  # no (complete) config recorded: nothing can match the paper config


def _protocol(metrics: Mapping) -> str | None:
    """How an image run's test number was measured: test dequantization, the trace of the
    log-density at test, the number of training images, and the logit (None for toy runs)."""
    data = metrics.get("data") or {}
    if data.get("kind") != "image":
        return None
    model = (metrics.get("config") or {}).get("model") or {}
    draws = data.get("eval_noise_draws")
    test = f"noise x{draws}" if draws else "bin centres"
    trace = model.get("eval_divergence")
    if trace is None:
        trace = "exact log-det" if metrics.get("test_nfe") is None else "not recorded"
    elif trace == "hutchinson" and model.get("probe"):
        trace = f"hutchinson, {model['probe']} probe"
    train = (data.get("sizes") or {}).get("train")
    alpha = model.get("logit_alpha", "not recorded")
    logit = "none" if alpha is None else alpha
    images = f"{train:,}" if isinstance(train, int) else "not recorded"
    return f"test: {test}; trace: {trace}; train images: {images}; logit: {logit}"


def run_row(
    metrics: Mapping, path: str, profile: str, budget: str, target: float | None = None
) -> dict:
    """The summary row of one run, from its parsed ``metrics.json`` found at ``path`` (its job's
    ``benchmark.tsv`` beside it, when there is one), with ``target`` its time-to-target
    validation NLL (None: not measured)."""
    timing = metrics.get("timing") or {}
    provenance = metrics.get("provenance") or {}
    dataset = metrics["dataset"]
    convergence = metrics.get("convergence") or {}
    val_nfe_first, val_nfe_last = _val_nfe(metrics)
    return {
        "profile": profile,
        "family": family_of(dataset),
        "dataset": dataset,
        "method": metrics["method"],
        "seed": metrics["seed"],
        "status": run_status.derive(metrics),
        "budget": budget,
        **{key: metrics.get(key) for key in _TEST_FIELDS},
        "nfe_forward": _end(metrics.get("nfe_forward")),
        "nfe_backward": _end(metrics.get("nfe_backward")),
        "test_nfe": metrics.get("test_nfe"),
        "train_seconds": timing.get("train_seconds"),
        "seconds_per_iter": timing.get("seconds_per_iter"),
        "params": metrics.get("params"),
        "dims": _dims(metrics),
        "iterations": metrics.get("iterations"),
        "commit": provenance.get("commit"),
        "dirty": provenance.get("dirty"),
        "device": _device(provenance),
        "precision": _precision(provenance),
        "versions": _versions(provenance),
        "config_digest": metrics.get("config_digest"),
        "metrics": path,
        "protocol_digest": _protocol_digest(metrics),
        "protocol": _protocol(metrics),
        "converged": convergence.get("converged"),
        "stop_reason": convergence.get("reason"),
        "patience": convergence.get("patience"),
        "iteration_cap": convergence.get("cap"),
        "stopped_at": convergence.get("stopped_at"),
        "nfe_forward_sd": _sd(metrics.get("nfe_forward")),
        "nfe_backward_sd": _sd(metrics.get("nfe_backward")),
        "train_nfe": _train_nfe(metrics),
        "val_nfe_first": val_nfe_first,
        "val_nfe_last": val_nfe_last,
        "target_nll": target,
        "seconds_to_target": seconds_to_target(metrics, target),
        "overhead_seconds": overhead_seconds(metrics, Path(path)),
    }


def summarize(
    paths: Sequence[str | Path],
    profile: str,
    budgets: Mapping[str, str],
    entropy: Mapping[str, Mapping[str, float]] | None = None,
) -> pd.DataFrame:
    """The summary of the runs whose metrics files are ``paths``, in that order.

    ``budgets`` maps a family (``toy``, ``mnist``) to ``paper`` or ``reduced``, as the profile
    states it; a run of a family without a budget is an error. ``entropy`` (as
    :func:`replication.report.entropy.read` gives it) sets each toy run's target, H +
    :data:`TARGET_MARGIN`; a dataset without one gets no time to target.
    """
    entropy = entropy or {}
    rows = []
    for path in paths:
        path = Path(path)
        metrics = read_json(path, "metrics file")
        if not isinstance(metrics, dict) or not {"dataset", "method", "seed", "status"} <= set(
            metrics
        ):
            raise ConfigError(f"{path} is not a run's metrics file (dataset, method, seed, status)")
        family = family_of(metrics["dataset"])
        if family not in budgets:
            raise ConfigError(f"{path}: no budget given for family {family!r} (--budget)")
        h = entropy.get(metrics["dataset"])
        target = None if h is None else h["entropy"] + TARGET_MARGIN
        rows.append(run_row(metrics, path.as_posix(), profile, budgets[family], target))
    return pd.DataFrame(rows, columns=list(COLUMNS))


def hit_cap(converged: pd.Series) -> pd.Series:
    """True where a run stopped at its iteration cap before converging (``converged`` is
    False, however pandas read it); False where it converged or was not recorded."""
    return converged.map(lambda value: str(value) in ("False", "0", "0.0"))


def write(frame: pd.DataFrame, path: str | Path) -> None:
    """Write the summary as CSV (same rows, same bytes), atomically."""
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, lineterminator="\n")
    atomic.write_text(path, buffer.getvalue())


def read(path: str | Path) -> pd.DataFrame:
    """Read a summary written by :func:`write`; fails naming the missing columns."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"summary file not found: {path}")
    text_columns = (
        "commit", "config_digest", "metrics", "protocol_digest", "protocol", "stop_reason",
    )  # fmt: skip
    frame = pd.read_csv(path, dtype=dict.fromkeys(text_columns, str))
    for column in LATER_COLUMNS:
        if column not in frame.columns:
            frame[column] = None
    missing = [column for column in COLUMNS if column not in frame.columns]
    if missing:
        raise ConfigError(f"{path} lacks the summary columns {', '.join(missing)}")
    return frame
