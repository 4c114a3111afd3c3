"""`jitaku mailbox ...`: what arrived in a user's INBOX, as a list or one message whole."""

from __future__ import annotations

import sys

import typer

from jitaku.cli.common import (
    DEFAULT_DIR,
    CliError,
    DirOption,
    JsonOption,
    load_config,
    open_database,
    parse_address,
    print_json,
    print_table,
)
from jitaku.terminal import visible

mailbox_app = typer.Typer(no_args_is_help=True, help="Read what arrived.")


@mailbox_app.command("list")
def mailbox_list(address: str, data_dir: DirOption = DEFAULT_DIR, as_json: JsonOption = False) -> None:
    """One line per message: uid, date, from, subject, size."""
    from jitaku.cli import summary
    from jitaku.store import mailstore

    normalized = parse_address(address)
    try:
        stored = open_database(load_config(data_dir)).read_now(lambda c: mailstore.list_messages(c, normalized))
    except LookupError as error:
        raise CliError(str(error)) from None
    rows = [summary.summary(message) for message in stored]
    if as_json:
        print_json([row.as_json() for row in rows])
    else:
        print_table(
            ["uid", "date", "from", "subject", "size"],
            [[r.uid, r.date, r.sender, r.subject, r.size] for r in rows],
            whole={"uid", "date", "size"},
            empty=f"no mail in {normalized}'s INBOX",
        )


@mailbox_app.command("show")
def mailbox_show(address: str, uid: int, data_dir: DirOption = DEFAULT_DIR) -> None:
    """Write the stored message to standard output, byte for byte (on a terminal, its controls spelled out)."""
    from jitaku.store import mailstore

    normalized = parse_address(address)
    try:
        message = open_database(load_config(data_dir)).read_now(lambda c: mailstore.get_message(c, normalized, uid))
    except LookupError as error:
        raise CliError(str(error)) from None
    if message is None:
        raise CliError(f"no message {uid} in {normalized}")
    if sys.stdout.isatty():  # a person reads it: a stranger's bytes must not steer the terminal
        text = message.body.decode("utf-8", "replace").replace("\r\n", "\n")
        sys.stdout.write("\n".join("\t".join(map(visible, line.split("\t"))) for line in text.split("\n")))
        sys.stdout.flush()
        return
    sys.stdout.buffer.write(message.body)
    sys.stdout.buffer.flush()
