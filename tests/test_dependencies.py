"""The versions installed, the ones the suite runs on, are the ones pyproject.toml allows, and what we lean on
beyond a library's public interface has an upper bound: a fresh `pip install .` picks the newest release allowed.
An unbounded typer turned every usage mistake into "internal error" (issue 17)."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
REQUIREMENTS = [Requirement(text) for text in tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]]


@pytest.mark.parametrize("requirement", REQUIREMENTS, ids=[r.name for r in REQUIREMENTS])
def test_the_installed_version_is_one_pyproject_allows(requirement: Requirement) -> None:
    installed = version(requirement.name)
    assert requirement.specifier.contains(installed, prereleases=True), f"{requirement.name} {installed}: {requirement}"


@pytest.mark.parametrize("name", ["typer", "rich"])
def test_what_we_lean_on_beyond_its_interface_stops_below_the_next_release_that_may_break_it(name: str) -> None:
    (requirement,) = [r for r in REQUIREMENTS if r.name == name]
    assert any(spec.operator == "<" for spec in requirement.specifier), f"{requirement} has no upper bound"


def test_every_file_the_package_reads_is_in_what_pip_install_ships() -> None:
    """`pip install .` copies only the files package-data names besides the modules; an editable install (the
    suite's) reads the source tree and hides a template left out (the blog's home page answered 500 after
    `pip install .`, issue 21)."""
    package = PYPROJECT.parent / "src" / "jitaku"
    patterns = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-data"]["jitaku"]
    shipped = {path for pattern in patterns for path in package.glob(pattern)}
    data = {
        path
        for path in package.rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc", ".typed") and "__pycache__" not in path.parts
    }
    assert sorted(str(path.relative_to(package)) for path in data - shipped) == []
