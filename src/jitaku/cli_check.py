"""`jitaku check`: every health check once, as a table or JSON; the exit code is the worst state."""

from __future__ import annotations

import asyncio

import typer

from jitaku.cli import DEFAULT_DIR, DirOption, JsonOption, _config, _database
from jitaku.cli import _print_json as print_json
from jitaku.cli import _table as table


def check(data_dir: DirOption = DEFAULT_DIR, as_json: JsonOption = False) -> None:
    """Run every check once: exit 0 when all are ok, 1 on a warning, 2 on a critical."""
    from jitaku.health.checks import run_all
    from jitaku.health.result import worst

    config = _config(data_dir)
    results = asyncio.run(run_all(config.settings, _database(config)))
    if as_json:
        print_json([result.as_json() for result in results])
    else:
        table(["check", "state", "sentence"], [[r.check, str(r.state), r.sentence] for r in results])
    raise typer.Exit(int(worst(results)))
