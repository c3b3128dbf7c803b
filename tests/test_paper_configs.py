"""The paper configs are the originals': every value matches docs/originals.yaml, every value a
paper config sets has a source there, and the citations point at these configs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from replication import config
from replication.profiles import run_overrides
from replication.report import citations
from replication.yamlfile import load_yaml_text

ROOT = Path(__file__).parent.parent
ORIGINALS = load_yaml_text((ROOT / "docs" / "originals.yaml").read_text(), "docs/originals.yaml")
SOURCE_KINDS = ("paper", "code", "ours")


def _leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"train.lr": 0.001, ...}`` for a nested mapping; lists are leaves."""
    if not isinstance(node, dict):
        return {prefix: node}
    found = {}
    for key, value in node.items():
        found.update(_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    return found


@pytest.mark.parametrize("method", sorted(ORIGINALS))
def test_paper_config_resolves_to_the_originals(method):
    entry = ORIGINALS[method]
    resolved = _leaves(config.load(ROOT / entry["config"]).to_dict())
    wrong = {
        key: (resolved.get(key, "missing"), spec["value"])
        for key, spec in entry["values"].items()
        if resolved.get(key, "missing") != spec["value"]
    }
    assert not wrong, f"{entry['config']}: resolved value != original (resolved, original)"


@pytest.mark.parametrize("method", sorted(ORIGINALS))
def test_every_value_a_paper_config_sets_is_sourced(method):
    entry = ORIGINALS[method]
    raw = load_yaml_text((ROOT / entry["config"]).read_text(), entry["config"])
    unsourced = set(_leaves(raw)) - set(entry["values"])
    assert not unsourced, f"{entry['config']} sets values docs/originals.yaml does not source"
    for key, spec in entry["values"].items():
        kind, _, why = str(spec["source"]).partition(":")
        assert kind.split(" ")[0] in SOURCE_KINDS, f"{method} {key}: source {spec['source']!r}"
        assert kind == "paper" or why.strip(), f"{method} {key}: a source needs its reason"


def test_citations_judge_against_the_paper_configs():
    cited = citations.load(ROOT / "config" / "citations.yaml", "mnist").methods
    assert set(cited) == set(ORIGINALS)
    for method, citation in cited.items():
        assert citation.config.resolve() == (ROOT / ORIGINALS[method]["config"]).resolve()


def test_budgets_are_the_originals_updates():
    """The budgets the issue found short: FFJORD 1000 epochs of 300 updates, RNODE 100 of 300,
    NICE 1500 of 250 (its 50,000 training images at batch 200)."""
    iterations = {
        method: config.load(ROOT / entry["config"]).train.iterations
        for method, entry in ORIGINALS.items()
    }
    assert iterations["ffjord"] == 1000 * 60_000 // 200
    assert iterations["rnode"] == 100 * 300
    assert iterations["nice"] == 1500 * 50_000 // 200


def test_no_file_cites_a_reference_outside_the_repository():
    texts = [ROOT / "README.md", ROOT / "Snakefile"] + [
        path
        for folder in ("config", "replication", "docs", "rules", "tests", "report")
        for path in (ROOT / folder).rglob("*")
        if path.suffix in (".py", ".yaml", ".md", ".smk") and path.name != Path(__file__).name
    ]
    citing = [str(p.relative_to(ROOT)) for p in texts if "REFERENCES" in p.read_text()]
    assert not citing


def test_the_paper_profiles_runs_are_the_paper_configs():
    """What rules/common.smk passes to a paper-profile MNIST job (data name, seed, device,
    threads and any overrides) leaves the protocol digest of the paper config unchanged, so
    those runs get a verdict; the default profile's CPU configs do not."""
    cited = citations.load(ROOT / "config" / "citations.yaml", "mnist").methods
    for profile, judged in (("paper", True), ("default", False)):
        spec = yaml.safe_load((ROOT / "config" / "profiles" / f"{profile}.yaml").read_text())
        family = spec["families"]["mnist"]
        for entry in family["methods"]:
            overrides = run_overrides(spec, "mnist", entry, "mnist", 2)  # as the job gets them
            run = config.load(ROOT / entry["config"], tuple(overrides))
            paper = config.load(cited[entry["method"]].config)
            assert (run.protocol_digest() == paper.protocol_digest()) is judged, entry
