"""The package's imports, read from its source: no module imports itself in a circle, and the arrows between
packages point one way (the store serves, DDNS stands alone, config is plain data, lists use mail).

Every import counts, at the top of a module or inside a function: a lazy import runs all the same, only later.
A module's implicit import of its own package (`jitaku.store` before `jitaku.store.accounts`) does not count:
that is how Python loads a package, not an arrow anyone wrote.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import jitaku

ROOT = Path(jitaku.__file__).parent

# Packages that serve people or other machines: the store must know none of them.
SERVICES = frozenset({"mail", "lists", "health", "ddns", "web", "cli"})


def _module_names() -> dict[str, Path]:
    """Dotted names below `jitaku` ("store.accounts", "config", "store" for a package's __init__)."""
    names = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _source(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    base = ["jitaku", *package.split(".")] if package else ["jitaku"]
    base = base[: len(base) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def _imported(name: str, path: Path, modules: set[str]) -> Iterator[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            named = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = _source(node, package)
            # `from jitaku.store import accounts` imports the module; `from jitaku.store import Database`, the package.
            named = [
                f"{source}.{alias.name}" if f"{source}.{alias.name}".removeprefix("jitaku.") in modules else source
                for alias in node.names
            ]
        else:
            continue
        for target in named:
            dotted = target.removeprefix("jitaku.")
            if target.startswith("jitaku.") and dotted in modules and dotted != name:
                yield dotted


def import_graph() -> dict[str, set[str]]:
    """Each module's name and the modules it imports."""
    names = _module_names()
    return {name: set(_imported(name, path, set(names))) for name, path in names.items()}


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[frozenset[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    break
                if successor in stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = set()
                    while True:
                        member = stack.pop()
                        group.add(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        found.append(frozenset(group))
    return found


def package_of(module: str) -> str:
    """The top-level part a module belongs to: "store.accounts" -> "store"."""
    return module.split(".")[0]


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        edges = packages.setdefault(package_of(module), set())
        edges.update(package_of(target) for target in targets if package_of(target) != package_of(module))
    return packages


def forbidden(graph: dict[str, set[str]]) -> list[str]:
    """Arrows that point the wrong way, as "module -> module"."""
    leaves = {module for module, targets in graph.items() if not targets}
    wrong = []
    for module, targets in sorted(graph.items()):
        source = package_of(module)
        for target in sorted(targets):
            into = package_of(target)
            if (
                (source == "store" and into in SERVICES)
                or (source == "ddns" and into == "mail")
                or (source == "mail" and into == "lists")
                or (module == "config" and target not in leaves)
            ):
                wrong.append(f"jitaku.{module} -> jitaku.{target}")
    return wrong


def test_the_graph_sees_top_level_lazy_and_from_package_imports() -> None:
    """The walk itself: what the checks below rely on it to find."""
    graph = import_graph()
    assert "alert_targets" in graph["config"]  # imported inside a validator: lazy, and counted
    assert "addresses" in graph["mail.policy"]  # `from jitaku import addresses`
    assert "store.accounts" in graph["mail.policy"]  # `from jitaku.store import Database, accounts`
    assert "store" in graph["mail.policy"]


def test_no_module_imports_itself_in_a_circle() -> None:
    assert [sorted(f"jitaku.{module}" for module in group) for group in cycles(import_graph())] == []


def test_no_package_imports_itself_in_a_circle() -> None:
    """A circle through two packages is one even when no single module closes it."""
    assert [sorted(group) for group in cycles(package_graph(import_graph()))] == []


def test_arrows_between_packages_point_one_way() -> None:
    """store -> no service; ddns -> not mail; mail -> not lists; config -> only modules that import nothing of ours."""
    assert forbidden(import_graph()) == []


def test_the_checks_catch_the_circles_this_test_was_written_for() -> None:
    """Each rule fails on the arrow it forbids: a test that cannot fail guards nothing."""
    graph = {
        "store.accounts": {"lists.verp"},
        "lists.verp": {"store.accounts"},
        "ddns.records": {"mail.orgdomain"},
        "mail.orgdomain": set(),
        "config": {"health.alerts"},
        "health.alerts": {"config"},
        "mail.policy": {"lists.verp"},
    }
    assert forbidden(graph) == [
        "jitaku.config -> jitaku.health.alerts",
        "jitaku.ddns.records -> jitaku.mail.orgdomain",
        "jitaku.mail.policy -> jitaku.lists.verp",
        "jitaku.store.accounts -> jitaku.lists.verp",
    ]
    assert sorted(map(sorted, cycles(graph))) == [["config", "health.alerts"], ["lists.verp", "store.accounts"]]
    assert {"lists", "store"} in [set(group) for group in cycles(package_graph(graph))]
