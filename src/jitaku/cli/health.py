"""`jitaku check` (every health check once, as a table or JSON; the exit code is the worst state) and
`jitaku alerts test`."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from jitaku.cli.common import (
    DEFAULT_DIR,
    CliError,
    DirOption,
    JsonOption,
    console,
    load_config,
    open_database,
    print_json,
    print_table,
)
from jitaku.terminal import visible


def check(
    names: Annotated[list[str] | None, typer.Argument(help="Only these checks (default: all).")] = None,
    data_dir: DirOption = DEFAULT_DIR,
    as_json: JsonOption = False,
) -> None:
    """Run every check once: exit 0 when all are ok, 1 on a warning, 2 on a critical."""
    from jitaku import ports, resolver
    from jitaku.health import checks, history
    from jitaku.health.result import worst

    unknown = sorted(set(names or []) - set(checks.CHECKS))
    if unknown:
        raise CliError(f"no such check: {', '.join(unknown)} (there are {', '.join(checks.CHECKS)})")
    config = ports.running(load_config(data_dir))  # a listener on "host:0" is checked where the daemon got its port
    resolver.configure(config.settings.dns.nameservers)
    database = open_database(config)
    from jitaku.ha import role

    previous = {name: result for name, (_at, result) in database.read_now(history.latest).items()}
    standby = role.current(config) == role.STANDBY
    results = asyncio.run(checks.run_all(checks.Context(config, database, previous, standby), names))
    if as_json:
        print_json([result.as_json() for result in results])
    else:
        print_table(
            ["check", "state", "sentence"],
            [[r.check, str(r.state), r.sentence] for r in results],
            whole={"check", "state"},
            empty=f"nothing to check: {', '.join(names or [])} {'does' if len(names or []) == 1 else 'do'} not apply"
            " to this config",
        )
    raise typer.Exit(int(worst(results)))


alerts_app = typer.Typer(no_args_is_help=True, help="Alerts through apprise.")


@alerts_app.command("test")
def alerts_test(data_dir: DirOption = DEFAULT_DIR) -> None:
    """Send a test alert to every `[alerts] urls` target; exit 1 if any did not take it."""
    from jitaku.health.alerts import Alerter

    config = load_config(data_dir)
    alerter = Alerter(config.settings.alerts, config.settings.hostname)
    if not alerter.configured:
        raise CliError("no [alerts] urls in the config")
    deliveries = asyncio.run(alerter.test())
    for delivery in deliveries:
        console.print(f"{'sent' if delivery.ok else 'FAILED'}  {visible(delivery.target)}")
    if not all(delivery.ok for delivery in deliveries):
        raise CliError("some targets did not take the test alert (see above)")
