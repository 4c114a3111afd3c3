"""`jitaku dkim show`: the DKIM keys' TXT records, to publish."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from jitaku import dns_records
from jitaku.cli.common import DEFAULT_DIR, CliError, DirOption, JsonOption, load_config, print_json

dkim_app = typer.Typer(no_args_is_help=True, help="DKIM keys.")


@dkim_app.command("show")
def dkim_show(
    domain: Annotated[str | None, typer.Argument(help="One domain (default: all).")] = None,
    data_dir: DirOption = DEFAULT_DIR,
    as_json: JsonOption = False,
) -> None:
    """The DKIM TXT records to publish, as zone-file text."""
    config = load_config(data_dir)
    if domain and not config.settings.is_local_domain(domain):
        raise CliError(f"{domain} is not one of this server's domains")
    records = dns_records.dkim(config, domain.lower() if domain else None)
    if as_json:
        print_json([{"name": r.name, "value": r.value} for r in records])
    else:
        sys.stdout.write(dns_records.zone_text(records))  # whole, as init prints them: a cut key is no key
