"""The `jitaku` command: init, serve, user, alias, mailbox, queue, dkim, list, ddns, dns, check, alerts, smart, blog,
db, backup, standby, ha.

One module per command group; they share only `jitaku.cli.common` (options, errors, printing) and are put
together in `jitaku.cli.commands`. A plain `jitaku serve [--dir DIR]` skips them: the daemon runs without
Typer and Rich, which it would carry for its whole life (its idle memory is held under 80 MB, issue 20).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from jitaku.cli.errors import USAGE
from jitaku.terminal import visible

if TYPE_CHECKING:
    import typer


def main() -> None:
    """Every outcome is an exit code, and a failure says on stderr what is wrong; a traceback only with JITAKU_DEBUG=1.

    0 done, 1 refused (the request was understood and cannot be carried out), 2 a usage mistake (the command line,
    or input ended at a prompt), 70 a bug, 130 Ctrl-C; `jitaku check` adds its own 1 and 2 (a warning, a critical).
    """
    debug = os.environ.get("JITAKU_DEBUG") == "1"
    try:
        serving = serve_dir(sys.argv[1:])
        if serving is not None:
            from jitaku import app as daemon

            daemon.serve(serving)
            code: object = 0
        else:
            code = _typer_main()
    except _refusals() as error:
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
        if _read_only(error):
            sys.stderr.write(
                "jitaku: this box's database is read-only: it is a standby, or fenced (`jitaku ha status` says "
                "which); run this on the primary\n"
            )
            sys.exit(1)
        sys.stderr.write(f"jitaku: internal error: {visible(repr(error))} (JITAKU_DEBUG=1 shows the traceback)\n")
        sys.exit(70)
    sys.exit(code if isinstance(code, int) else 0)


def serve_dir(args: list[str]) -> Path | None:
    """The data directory of `jitaku serve`, `jitaku serve --dir DIR` or `--dir=DIR`, chosen as typer's --dir
    option chooses it (jitaku.cli.common.RootDirOption); None for any other command line, help and usage
    mistakes included, which typer reads."""
    if args == ["serve"]:
        from jitaku.data_dir import find

        given = os.environ.get("JITAKU_DIR")  # empty counts as unset, for typer too
        return Path(given) if given else find()
    if len(args) == 3 and args[:2] == ["serve", "--dir"]:
        given = args[2]
    elif len(args) == 2 and args[0] == "serve" and args[1].startswith("--dir="):
        given = args[1].removeprefix("--dir=")
    else:
        return None
    return Path(given) if given and not given.startswith("-") else None


def _typer_main() -> object:
    """Not typer's standalone mode: that prints a usage mistake as a Rich panel and an end of input as
    "Aborted." with exit 1. prog_name: the usage line says `jitaku` under `python -m jitaku` too."""
    import typer

    from jitaku.cli.commands import app

    try:
        return app(prog_name="jitaku", standalone_mode=False)  # a command's typer.Exit(N) comes back as N
    except typer.TyperException as error:
        sys.exit(_say_typer_error(error))
    except typer.Abort:  # typer's word for EOFError: Ctrl-D at the password prompt
        sys.stderr.write("jitaku: the input ended (Ctrl-D) before an answer; nothing changed\n")
        sys.exit(USAGE)


def _read_only(error: BaseException) -> bool:
    """Whether ERROR is a write the database refused as read-only; the store's module is loaded once a command
    touched the database, and only then can this be."""
    errors = sys.modules.get("jitaku.store.errors")
    return errors is not None and bool(errors.read_only(error))


def _refusals() -> tuple[type[Exception], ...]:
    """What main() prints as a refusal (exit 1): asked only once something was raised, so that a plain
    `jitaku serve` does not load the modules that define them (the store's, SQLAlchemy) for an except clause."""
    from jitaku.cli.errors import CliError
    from jitaku.config import ConfigError
    from jitaku.errors import BackupError, ClusterError, PrivilegeError, SchemaSkew, ServeError
    from jitaku.ha.address import AddressError
    from jitaku.service import ServiceError
    from jitaku.store.accounts import AccountError
    from jitaku.store.copy import CopyRefused

    return (
        ConfigError,
        ServeError,
        PrivilegeError,
        AccountError,
        CliError,
        ServiceError,
        ClusterError,
        AddressError,
        CopyRefused,
        SchemaSkew,
        BackupError,
    )


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
