"""`jitaku queue ...`: the outbound messages waiting for delivery, retried now or dropped."""

from __future__ import annotations

import time

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
from jitaku.words import counted

queue_app = typer.Typer(no_args_is_help=True, help="The outbound queue.")


@queue_app.command("list")
def queue_list(data_dir: DirOption = DEFAULT_DIR, as_json: JsonOption = False) -> None:
    """Messages waiting for delivery."""
    from jitaku.store import queue

    rows = [m.as_json() for m in open_database(load_config(data_dir)).query_now(queue.list_queue)]
    if as_json:
        print_json(rows)
    else:
        keys = ["id", "attempts", "next_attempt", "sender", "recipients", "last_error"]
        print_table(
            [key.replace("_", " ") for key in keys],
            [[row[key] for key in keys] for row in rows],
            whole={"id", "attempts", "next attempt"},
            below="last error",
            empty="the queue is empty: nothing waits to be delivered",
        )


@queue_app.command("flush")
def queue_flush(data_dir: DirOption = DEFAULT_DIR) -> None:
    """Retry every queued message now (a running daemon notices within a second or two)."""
    from jitaku.store import queue

    with open_database(load_config(data_dir)).transaction() as connection:
        count = queue.flush(connection, time.time())
    console.print(f"{counted(count, 'message')} due now")


@queue_app.command("delete")
def queue_delete(queue_id: str, data_dir: DirOption = DEFAULT_DIR) -> None:
    """Drop a message from the queue without a bounce."""
    from jitaku.store import queue

    with open_database(load_config(data_dir)).transaction() as connection:
        if not queue.remove(connection, queue_id.upper()):
            raise CliError(f"no queued message {queue_id}")
    console.print(f"deleted {queue_id.upper()}")
