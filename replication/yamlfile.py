"""The YAML dialect of configs and profiles: ``1e-3`` is a float, and a key written twice is an
error. Kept free of torch, so that Snakemake can read profiles with it in any environment."""

from __future__ import annotations

import re
from collections.abc import Hashable
from typing import Any

import yaml

from replication.typed import ConfigError


class _Loader(yaml.SafeLoader):
    """YAML that reads ``1e-3`` as a float (YAML 1.1 wants ``1.0e-3`` and gives a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def _unique_keys(loader: _Loader, node: yaml.MappingNode) -> dict:
    """A mapping whose keys are unique: plain YAML keeps the last of two equal keys, so a
    setting written twice would silently lose one of its values."""
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, Hashable) and key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        if isinstance(key, Hashable):
            seen.add(key)
    return loader.construct_mapping(node, deep=True)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_keys)


def load_yaml_text(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as error:
        raise ConfigError(f"{source} is not valid YAML: {error}") from None
