"""Pipeline profiles (``config/profiles/*.yaml``) checked as written, before Snakemake merges them
and before any job runs.

Snakemake merges a profile given with ``--configfile`` over the default profile, so a profile
missing ``seeds`` or ``threads`` would silently run with the default's values: each file is
validated against the schema on its own first. Then every training run the profile asks for
is parsed exactly as its job will parse it (family and method overrides, dataset, seed), so an
override with an unknown key or a bad value fails the DAG, naming the profile key, instead of
failing inside every training job. Method names are checked here, against the registry of flows
(the schema lists none): each entry's method must be registered and be the method its
experiment config trains.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import jsonschema

from replication.typed import ConfigError, choice_error
from replication.yamlfile import load_yaml_text

SCHEMA = Path(__file__).resolve().parent.parent / "config" / "schema" / "profile.schema.yaml"


def read(path: str | Path) -> dict:
    """The profile at ``path`` as written (duplicate keys refused), not yet merged."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"profile file not found: {path}")
    return load_yaml_text(path.read_text(), str(path))


def check_schema(profile: object, source: str, schema_path: Path = SCHEMA) -> None:
    """ConfigError naming the key path of every schema violation."""
    schema = load_yaml_text(schema_path.read_text(), str(schema_path))
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(profile), key=lambda e: list(e.path)
    )
    if errors:
        problems = [
            f"{'.'.join(str(part) for part in error.path) or '(top level)'}: {error.message}"
            for error in errors
        ]
        raise ConfigError(f"profile {source} is invalid:\n  " + "\n  ".join(problems))


def run_overrides(profile: dict, family: str, entry: dict, dataset: str, seed: int) -> list[str]:
    """The ``--set`` assignments of one training job, as rules/common.smk passes them."""
    spec = profile["families"][family]
    return [
        *spec["overrides"],
        *entry.get("overrides", []),
        f"data.name={dataset}",
        f"seed={seed}",
        f"device={spec['device']}",
        f"threads={spec['threads']}",
    ]


def check_runs(profile: dict, source: str) -> int:
    """Parse the config of every (family, method, dataset) with the first seed, and of every
    seed with the first dataset; ConfigError naming the profile entry. Returns the count.
    Needs torch (the configs name flows): ImportError where it is not installed."""
    from replication import config as experiment
    from replication.flows import methods

    checked = 0
    for family, spec in profile["families"].items():
        for index, entry in enumerate(spec["methods"]):
            where = f"profile {source}: families.{family}.methods[{index}]"
            if entry["method"] not in methods():
                raise ConfigError(f"{where}: {choice_error('method', entry['method'], methods())}")
            for dataset, seed in _pairs(spec["datasets"], spec["seeds"]):
                overrides = run_overrides(profile, family, entry, dataset, seed)
                try:
                    trains = experiment.load(entry["config"], tuple(overrides)).model.method
                except ConfigError as error:
                    raise ConfigError(
                        f"{where} ({entry['method']} on {dataset}, seed {seed}, with the "
                        f"family's and the method's overrides): {error}"
                    ) from None
                if trains != entry["method"]:
                    raise ConfigError(
                        f"{where} names method {entry['method']!r}, but its config "
                        f"{entry['config']} (with overrides) trains {trains!r}"
                    )
                checked += 1
    return checked


def _pairs(datasets: list[str], seeds: list[int]) -> Iterable[tuple[str, int]]:
    if not datasets:
        return []
    return [(d, seeds[0]) for d in datasets] + [(datasets[0], s) for s in seeds[1:]]


def check(paths: Iterable[str | Path], merged: dict) -> int:
    """What the Snakefile runs: each ``--configfile`` as written against the schema, then every
    run of the merged profile (which also holds any ``--config`` values). Returns the count."""
    for path in paths:
        check_schema(read(path), str(path))
    source = f"{merged.get('profile', '?')} (as merged)"
    check_schema(merged, source)
    return check_runs(merged, source)


def check_file(path: str | Path) -> int:
    """``python -m replication check-profile``: one profile file, schema and runs."""
    profile = read(path)
    check_schema(profile, str(path))
    return check_runs(profile, str(path))
