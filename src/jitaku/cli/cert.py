"""`jitaku cert ...`: the certificate every listener serves, and a renewal by ACME now (safe beside a running
daemon: the two take turns on DIR/acme/lock, and its web serves the HTTP-01 tokens this process writes)."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer

from jitaku.cli.common import DEFAULT_DIR, CliError, DirOption, JsonOption, console, load_config, utc_time
from jitaku.config import Config
from jitaku.terminal import visible

cert_app = typer.Typer(no_args_is_help=True, help="TLS certificates, by ACME.")


def _when(timestamp: float) -> str | None:
    return utc_time(timestamp) if timestamp else None


@cert_app.command("status")
def status(data_dir: DirOption = DEFAULT_DIR, as_json: JsonOption = False) -> None:
    """The certificate served (issuer, names, expiry) and what the last ACME attempts came to. Reads only."""
    from jitaku.acme import issue, state

    config = load_config(data_dir)
    acme = config.settings.acme
    cert = issue.certificate(config)
    attempts = state.read(config.data_dir)
    not_after = cert.not_valid_after_utc.timestamp() if cert is not None else None
    found: dict[str, Any] = {
        "issuer": cert.issuer.rfc4514_string() if cert is not None else None,
        "names": issue.names_of(cert) if cert is not None else [],
        "not_after": utc_time(not_after) if not_after else None,
        "days_left": round((not_after - time.time()) / 86400, 1) if not_after else None,
        "acme": "on" if acme.enabled else "off",
        "directory": acme.directory,
        "last_error": attempts.last_error or None,
        "left_out": attempts.left_out or None,
        "next_try": _when(attempts.next_try),
        "last_success": _when(attempts.last_success),
    }
    if as_json:
        typer.echo(json.dumps(found, ensure_ascii=False))
        return
    width = max(len(key) for key in found)
    for key, value in found.items():
        shown = ", ".join(value) if isinstance(value, list) else value
        shown = "-" if shown in (None, "") else visible(str(shown))  # the CA's or a DNS provider's own text
        console.print(f"{key.replace('_', ' ').ljust(width)}  {shown}")


@cert_app.command("renew")
def renew(
    data_dir: DirOption = DEFAULT_DIR,
    force: Annotated[bool, typer.Option("--force", help="Renew even when the certificate is not due.")] = False,
) -> None:
    """Order a certificate by ACME now, when due (or --force), whatever the backoff after failures says."""
    from jitaku.acme import issue, state

    config = load_config(data_dir)
    if not config.settings.acme.enabled:
        raise CliError(f"ACME is off: set [acme] email in {config.data_dir / 'jitaku.toml'}")
    now = time.time()
    if not force and issue.due(config, now) is None:
        _not_due(config)
        return
    try:
        issued = issue.obtain(config, now, force, waiting=lambda: console.print("waiting for the renewal under way"))
    except issue.AcmeError as error:
        next_try = state.moment(state.read(config.data_dir).next_try)  # as the certs check's alert says it
        raise CliError(f"renewal failed: {error}; the next automatic try is at {next_try}") from None
    if issued is None:  # the renewal we waited for got one
        _not_due(config)
        return
    console.print(f"renewed: {', '.join(issued.names)}, valid until {utc_time(issued.not_after)}")
    for name, reason in issued.left_out:
        console.print(f"left out {name}: {reason}")


def _not_due(config: Config) -> None:
    from jitaku.acme import issue

    cert = issue.certificate(config)
    assert cert is not None  # not due: there is one
    console.print(
        f"not due: valid until {utc_time(cert.not_valid_after_utc.timestamp())}; renewal from "
        f"{utc_time(issue.renew_from(cert, config.settings.acme.renew_days))} (--force renews now)"
    )
