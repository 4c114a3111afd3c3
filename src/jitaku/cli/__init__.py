"""The `jitaku` command: init, serve, user, alias, mailbox, queue, dkim, list, ddns, dns, check, alerts, smart.

One module per command group; they share only `jitaku.cli.common` (options, errors, printing) and are put
together here, in the order `jitaku --help` lists them."""

from __future__ import annotations

import os
import sys

import typer

from jitaku.cli import ddns, dkim, dns, health, init, lists, mailbox, queue, serve, smart, users
from jitaku.cli.common import USAGE, CliError
from jitaku.config import ConfigError
from jitaku.terminal import visible

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="jitaku (自宅): a home server that keeps running.",
)
app.command("init")(init.init)
app.command("serve")(serve.serve)
app.command("check")(health.check)
app.add_typer(users.user_app, name="user")
app.add_typer(users.alias_app, name="alias")
app.add_typer(mailbox.mailbox_app, name="mailbox")
app.add_typer(queue.queue_app, name="queue")
app.add_typer(dkim.dkim_app, name="dkim")
app.add_typer(lists.list_app, name="list")
app.add_typer(smart.smart_app, name="smart")
app.add_typer(ddns.ddns_app, name="ddns")
app.add_typer(dns.dns_app, name="dns")
app.add_typer(health.alerts_app, name="alerts")


def main() -> None:
    """Every outcome is an exit code, and a failure says on stderr what is wrong; a traceback only with JITAKU_DEBUG=1.

    0 done, 1 refused (the request was understood and cannot be carried out), 2 a usage mistake (the command line,
    or input ended at a prompt), 70 a bug, 130 Ctrl-C; `jitaku check` adds its own 1 and 2 (a warning, a critical).
    """
    from jitaku.errors import PrivilegeError, ServeError
    from jitaku.service import ServiceError
    from jitaku.store.accounts import AccountError

    debug = os.environ.get("JITAKU_DEBUG") == "1"
    try:
        # Not typer's standalone mode: that prints a usage mistake as a Rich panel and an end of input as
        # "Aborted." with exit 1. prog_name: the usage line says `jitaku` under `python -m jitaku` too.
        code = app(prog_name="jitaku", standalone_mode=False)  # a command's typer.Exit(N) comes back as N
    except typer.TyperException as error:
        sys.exit(_say_typer_error(error))
    except typer.Abort:  # typer's word for EOFError: Ctrl-D at the password prompt
        sys.stderr.write("jitaku: the input ended (Ctrl-D) before an answer; nothing changed\n")
        sys.exit(USAGE)
    except (ConfigError, ServeError, PrivilegeError, AccountError, CliError, ServiceError) as error:
        if debug:
            raise
        sys.stderr.write(f"jitaku: {visible(str(error))}\n")
        sys.exit(1)
    except PermissionError as error:  # another user's data directory, run as neither root nor them
        if debug:
            raise
        where = f"{error.filename}: " if error.filename else ""
        sys.stderr.write(f"jitaku: {visible(where + (error.strerror or str(error)))}\n")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as error:  # a bug: one line for the person, the traceback on request
        if debug:
            raise
        sys.stderr.write(f"jitaku: internal error: {visible(repr(error))} (JITAKU_DEBUG=1 shows the traceback)\n")
        sys.exit(70)
    sys.exit(code if isinstance(code, int) else 0)


def _say_typer_error(error: typer.TyperException) -> int:
    """Say what typer refused, and return its exit code (2 for a usage mistake).

    Since 0.26 typer raises its own copy of click's exceptions, not click's: catching click's let every usage
    mistake through as "internal error ... exit 70" (issue 17). TyperException is their public base; UsageError
    and NoArgsIsHelpError are not re-exported, hence the private import, which pyproject's bound on typer and
    test_cli's usage tests keep honest.
    """
    from typer._click.exceptions import NoArgsIsHelpError, UsageError

    if isinstance(error, NoArgsIsHelpError):  # `jitaku` or `jitaku user` alone: Rich printed the help already
        return error.exit_code
    sys.stderr.write(f"jitaku: {visible(error.format_message())}\n")
    if isinstance(error, UsageError) and error.ctx is not None:
        sys.stderr.write(f"{error.ctx.get_usage()}  (see {error.ctx.command_path} --help)\n")
    return error.exit_code
