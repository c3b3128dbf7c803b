"""Provenance: a checkout is dirty when its code differs from the commit, not its outputs."""

import shutil
import subprocess

import pytest

from replication.provenance import OUTPUT_FOLDERS, git_commit

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _git(root, *args):
    subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.org", *args],
        cwd=root, check=True, capture_output=True,
    )  # fmt: skip


@pytest.fixture
def checkout(tmp_path):
    """A repository with code and committed outputs in every output folder."""
    (tmp_path / "code.py").write_text("x = 1\n")
    for folder in OUTPUT_FOLDERS:
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "committed.json").write_text("{}\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "start")
    return tmp_path


def test_clean_checkout_is_not_dirty(checkout):
    record = git_commit(checkout)
    assert len(record["commit"]) == 40 and record["dirty"] is False


def test_rewritten_or_deleted_outputs_are_not_local_changes(checkout):
    (checkout / OUTPUT_FOLDERS[0] / "committed.json").write_text('{"new": 1}\n')
    (checkout / OUTPUT_FOLDERS[1] / "committed.json").unlink()
    assert git_commit(checkout)["dirty"] is False


def test_changed_code_is_dirty(checkout):
    (checkout / "code.py").write_text("x = 2\n")
    assert git_commit(checkout)["dirty"] is True


def test_outside_a_repository_the_commit_is_unknown(tmp_path):
    assert git_commit(tmp_path) == {"commit": "unknown", "dirty": None}
