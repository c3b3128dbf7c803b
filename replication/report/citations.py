"""Published numbers (``config/citations.yaml``): each with its source, reliability tag and
the paper config (``config``) whose runs are compared with it.

The file is data, typed by hand once from the papers (their tables and sources are described
in ``docs/sources.md``); this module only reads and checks it, so a table never holds a number
that is not traceable to a line of that file. Config paths are relative to the file's folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from replication.typed import ConfigError


@dataclass(frozen=True)
class Citation:
    """A published value (None when the paper reports none), where it comes from, its tag."""

    value: float | None
    source: str
    tag: str | None
    config: Path | None = None  # the paper config; None where the method has none


@dataclass(frozen=True)
class Citations:
    """The published values of one dataset's metric, per method."""

    metric: str
    unit: str
    methods: dict[str, Citation]


def load(path: str | Path, dataset: str) -> Citations:
    """The citations of ``dataset`` in the YAML file ``path``; ConfigError when malformed."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"citations file not found: {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    section = raw.get(dataset)
    if not isinstance(section, dict) or not isinstance(section.get("methods"), dict):
        raise ConfigError(f"{path}: no '{dataset}' section with 'methods'")
    methods = {}
    for method, entry in section["methods"].items():
        if not isinstance(entry, dict) or set(entry) != {"value", "source", "tag", "config"}:
            raise ConfigError(
                f"{path}: {dataset}.{method} needs exactly value, source, tag and config"
            )
        value = entry["value"]
        if value is not None and not isinstance(value, int | float):
            raise ConfigError(f"{path}: {dataset}.{method}.value must be a number or null")
        config = None if entry["config"] is None else path.parent / entry["config"]
        if config is not None and not config.is_file():
            raise ConfigError(f"{path}: {dataset}.{method}.config {config} does not exist")
        methods[method] = Citation(
            None if value is None else float(value), str(entry["source"]), entry["tag"], config
        )
    return Citations(str(section.get("metric", "")), str(section.get("unit", "")), methods)
