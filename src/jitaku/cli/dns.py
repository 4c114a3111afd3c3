"""`jitaku dns records`: every DNS record this server needs, as zone-file text, and what DNS serves for each."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer

from jitaku import dns_records
from jitaku.cli.common import DEFAULT_DIR, DirOption, JsonOption, load_config, print_json, records_to_publish

dns_app = typer.Typer(no_args_is_help=True, help="The DNS records this server needs.")


@dns_app.command("records")
def records(
    data_dir: DirOption = DEFAULT_DIR,
    as_json: JsonOption = False,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Add what DNS serves for each ([dns] nameservers); exit 1 when a record is missing or differs.",
        ),
    ] = False,
) -> None:
    """Every record to publish (MX, SPF, DKIM, DMARC, the host's address, PTR), as zone-file text."""
    from jitaku import resolver

    config = load_config(data_dir)
    wanted = records_to_publish(config)
    if not check:
        if as_json:
            print_json([record.as_json() for record in wanted])
        else:
            sys.stdout.write(dns_records.zone_text(wanted))
        return
    resolver.configure(config.settings.dns.nameservers)
    seen = asyncio.run(dns_records.look_up(wanted, resolver.uncached_async_resolver()))
    if as_json:
        print_json([one.as_json() for one in seen])
    else:
        sys.stdout.write(dns_records.checked_text(seen))
    if any(one.failed for one in seen):
        raise typer.Exit(1)
