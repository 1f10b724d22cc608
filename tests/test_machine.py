"""benchmarks.machine: the code version every results file names."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from benchmarks.machine import code_version, machine_description, write_results

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=repo,
                          capture_output=True, text=True, check=True).stdout.strip()


@needs_git
def test_code_version_names_the_commit_and_uncommitted_changes(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "r.md").write_text("a result\n")
    _git(tmp_path, "add", "a.py", "benchmarks/results/r.md")
    _git(tmp_path, "commit", "-qm", "first")
    head = _git(tmp_path, "rev-parse", "--short=7", "HEAD")
    assert code_version(tmp_path) == f"commit {head}"
    (tmp_path / "untracked.txt").write_text("not part of the code\n")
    assert code_version(tmp_path) == f"commit {head}"
    (tmp_path / "benchmarks" / "results" / "r.md").write_text("a new result\n")  # results are not code
    assert code_version(tmp_path) == f"commit {head}"
    (tmp_path / "a.py").write_text("x = 2\n")
    assert code_version(tmp_path) == f"commit {head} + uncommitted changes"


def test_code_version_outside_a_checkout_says_unknown(tmp_path: Path) -> None:
    assert code_version(tmp_path / "missing") == "code version unknown"


def test_machine_description_ends_with_the_code_version() -> None:
    assert machine_description().endswith(f"; code: {code_version()}")


def test_write_results_makes_the_folder_and_writes_nothing_without_a_path(tmp_path):
    out = tmp_path / "new" / "deeper" / "table.md"
    write_results("| a |\n", out)
    assert out.read_text() == "| a |\n"
    write_results("ignored", None)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["deeper", "new", "table.md"]
