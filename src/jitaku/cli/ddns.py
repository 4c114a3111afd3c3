"""`jitaku ddns ...`: what the DDNS updater knows, and an update now (safe beside a running daemon)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Any

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
    utc_time,
)
from jitaku.terminal import visible

if TYPE_CHECKING:
    from jitaku.store.ddns import State

ddns_app = typer.Typer(no_args_is_help=True, help="Dynamic DNS.")


def _when(timestamp: float | None) -> str | None:
    """None for a time not seen yet, which the state keeps as 0 or NULL."""
    return utc_time(timestamp) if timestamp else None


def _shown(state: State) -> dict[str, Any]:
    """What `ddns status` shows of a record: never a password or token, which the state does not hold."""
    return {
        "name": state.name,
        "family": f"IPv{state.family}",
        "provider": state.provider,
        "address": state.address,
        "address_at": _when(state.address_at),
        "sent": state.sent_address,
        "sent_at": _when(state.sent_at),
        "result": state.result,
        "published": state.published,
        "published_at": _when(state.published_at),
        "error": state.error,
        "next_keepalive": _when(state.next_keepalive),
    }


@ddns_app.command("status")
def status(data_dir: DirOption = DEFAULT_DIR, as_json: JsonOption = False) -> None:
    """Per record: the address we last sent, what the authoritative servers answer, when, and the last error."""
    from jitaku.store import ddns

    config = load_config(data_dir)
    known = {(s.name, s.family): s for s in open_database(config).read_now(ddns.all_states)}
    rows = []
    for record in config.settings.ddns:
        for family, wanted in ((4, record.ipv4), (6, record.ipv6)):
            if wanted:
                state = known.get((record.name, family)) or ddns.State(record.name, family, record.provider, "")
                rows.append(_shown(state))
    if as_json:
        print_json(rows)
    else:
        keys = ["name", "family", "provider", "address", "sent", "published", "published_at", "error"]
        print_table(
            [key.replace("_", " ") for key in keys],
            [[row[key] for key in keys] for row in rows],
            whole={"family", "published at"},
            below="error",
            empty="no [[ddns]] records in the config",
        )


@ddns_app.command("update")
def update(
    data_dir: DirOption = DEFAULT_DIR,
    force: Annotated[bool, typer.Option("--force", help="Update even when the record looks right.")] = False,
) -> None:
    """Check every record now and update what needs it (waits for a running daemon's round to finish)."""
    from jitaku import resolver
    from jitaku.ddns.lock import Busy
    from jitaku.ddns.updater import Updater

    config = load_config(data_dir)
    if not config.settings.ddns:
        raise CliError("no [[ddns]] records in the config")
    resolver.configure(config.settings.dns.nameservers)
    try:
        states = asyncio.run(Updater(config.settings, data_dir, open_database(config)).round(force=force, wait=30.0))
    except Busy as error:
        raise CliError(str(error)) from None
    for state in states:
        console.print(  # the error may quote a provider's reply
            visible(
                f"{state.name} IPv{state.family}: sent {state.sent_address}, published {state.published}"
                + (f", error: {state.error}" if state.error else "")
            )
        )
    if any(state.error for state in states):
        raise CliError("some records are not right yet (see above)")
