"""`jitaku serve` loads only what the daemon uses: the command line's libraries (Typer, Rich), apprise without
an alert URL, httpx without a heartbeat or buddy, psutil, prometheus_client without a metrics token, and jinja2
before the first page are each megabytes of the idle memory held under 80 MB (issue 20). Easy to bring back
with one import at the top of a module; tests/integration/test_memory.py measures the whole."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jitaku import app as daemon
from jitaku.cli import serve_dir
from jitaku.cli.commands import app

NOT_IN_THE_DAEMON = ("apprise", "typer", "rich", "httpx", "psutil", "prometheus_client", "jinja2")
# What `jitaku serve` imports: the entry and the daemon, and what the daemon imports as it starts (the health
# monitor, the web app); `python -m jitaku serve` runs jitaku.cli.main.
SERVE_IMPORTS = ("jitaku.cli", "jitaku.app", "jitaku.health.monitor", "jitaku.web.status")


def test_the_daemon_imports_none_of_the_optional_libraries() -> None:
    code = (
        "import importlib, json, sys\n"
        f"for name in {SERVE_IMPORTS!r}: importlib.import_module(name)\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules if m.split('.')[0] in {NOT_IN_THE_DAEMON!r}}})))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(result.stdout) == [], "imported by `jitaku serve`, which must load them only when used"


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["serve"], None),
        (["serve"], ""),  # empty: as if unset
        (["serve"], "from-env"),
        (["serve", "--dir", "given"], "from-env"),
        (["serve", "--dir=given"], None),
    ],
)
def test_serve_runs_on_the_directory_typer_would_give_it(
    args: list[str], env: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    if env is None:
        monkeypatch.delenv("JITAKU_DIR", raising=False)
    else:
        monkeypatch.setenv("JITAKU_DIR", env)
    given: list[Path] = []
    monkeypatch.setattr(daemon, "serve", given.append)
    app(args, prog_name="jitaku", standalone_mode=False)
    assert serve_dir(args) == given[0]


@pytest.mark.parametrize(
    "args",
    [["serve", "--help"], ["serve", "--dir"], ["serve", "--dir", "--help"], ["serve", "extra"], ["serve", "--dir="]],
)
def test_anything_else_is_left_to_typer(args: list[str]) -> None:
    assert serve_dir(args) is None
