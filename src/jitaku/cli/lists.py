"""`jitaku list ...`: create and run mailing lists, named by their full address everywhere."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.markup import escape
from rich.progress import Progress
from sqlalchemy.engine import Connection

from jitaku.cli.common import (
    DEFAULT_DIR,
    CliError,
    DirOption,
    JsonOption,
    console,
    load_config,
    open_database,
    parse_address,
    parse_local_address,
    print_json,
    print_table,
    utc_time,
)
from jitaku.words import counted, yes_no

list_app = typer.Typer(no_args_is_help=True, help="Mailing lists.")

IMPORT_BATCH = 500


@list_app.command("create")
def create(
    address: str,
    data_dir: DirOption = DEFAULT_DIR,
    name: Annotated[str | None, typer.Option(help="Display name (default: the local part).")] = None,
    subject_tag: Annotated[
        str | None, typer.Option("--subject-tag", help="Subject tag, fml style (default [LOCAL:%05d]).")
    ] = None,
    reply_to: Annotated[str, typer.Option("--reply-to", help="list | sender | none")] = "list",
    dmarc: Annotated[str, typer.Option(help="auto | munge | wrap | none")] = "auto",
    owner: Annotated[list[str] | None, typer.Option(help="An owner's address (repeat for more).")] = None,
) -> None:
    """Create a list on one of this server's domains."""
    from jitaku.store import lists

    config = load_config(data_dir)
    normalized = parse_local_address(config, address)
    local = normalized.partition("@")[0]
    owners = ",".join(parse_address(o) for o in owner or [])
    with open_database(config).transaction() as connection:
        lists.create_list(
            connection, normalized, name or local, subject_tag or f"[{local}:%05d]", reply_to, dmarc, owners
        )
    console.print(f"created {normalized}")


@list_app.command("delete")
def delete(address: str, data_dir: DirOption = DEFAULT_DIR) -> None:
    """Delete a list with its members, archive and held posts."""
    from jitaku.store import lists

    with open_database(load_config(data_dir)).transaction() as connection:
        lists.delete_list(connection, parse_address(address))
    console.print(f"deleted {parse_address(address)}")


@list_app.command("list")
def list_(data_dir: DirOption = DEFAULT_DIR, as_json: JsonOption = False) -> None:
    """Every list: address, name, members, posts and posts waiting for a moderator."""
    from jitaku.store import lists

    found = open_database(load_config(data_dir)).read_now(lists.summaries)
    if as_json:
        print_json(found)
    else:
        keys = ["address", "name", "members", "posts", "held"]
        print_table(
            keys,
            [[summary[key] for key in keys] for summary in found],
            whole={"members", "posts", "held"},
            empty="no lists yet: jitaku list create LIST",
        )


@list_app.command("show")
def show(address: str, data_dir: DirOption = DEFAULT_DIR, as_json: JsonOption = False) -> None:
    """A list's settings and counts."""
    from jitaku.store import lists

    def query(connection: Connection) -> dict[str, object]:
        found = lists.get_list(connection, parse_address(address))
        shown: dict[str, object] = found.as_json()
        members = lists.members(connection, found.id)
        shown["members"] = len(members)
        shown["disabled_members"] = sum(1 for m in members if not m.enabled)
        shown["posts"] = lists.post_count(connection, found.id)
        shown["held"] = len(lists.held(connection, found.id))
        # domains whose servers refused the list's mail as a whole, with their scores
        shown["refused_by"] = {r.domain: round(r.score, 2) for r in lists.refusals(connection, found.id)}
        return shown

    shown = open_database(load_config(data_dir)).read_now(query)
    if as_json:
        print_json([shown])
    else:
        print_table(
            ["setting", "value"], [[key, _setting(value)] for key, value in shown.items()], whole={"setting"}, empty=""
        )


def _setting(value: object) -> object:
    """A setting as a person reads it: one owner or refusing domain a line, "none" for none (not `['a@b']` or
    `{}`, issue 17)."""
    if isinstance(value, dict):
        value = [f"{key} (score {score})" for key, score in value.items()]
    if isinstance(value, list):
        return value or "none"
    return value


@list_app.command("set")
def set_(address: str, key: str, value: str, data_dir: DirOption = DEFAULT_DIR) -> None:
    """Change a setting: name, subject_tag, reply_to, dmarc, owners (comma-separated), bounce_threshold,
    archive (public, members or none: who reads the posts on the web)."""
    from jitaku.store import lists

    with open_database(load_config(data_dir)).transaction() as connection:
        lists.set_setting(connection, parse_address(address), key.replace("-", "_"), value)
    console.print(f"{parse_address(address)}: {key} = {value}")


@list_app.command("add")
def add(address: str, members: list[str], data_dir: DirOption = DEFAULT_DIR) -> None:
    """Add members (a disabled member is enabled again)."""
    from jitaku.store import lists

    wanted = [parse_address(m) for m in members]
    with open_database(load_config(data_dir)).transaction() as connection:
        found = lists.get_list(connection, parse_address(address))
        added, already = lists.add_members(connection, found.id, wanted)
        for member in already:
            lists.set_member(
                connection, found.id, member, enabled=True, bounce_score=0.0, bounce_at=None, disabled_reason=None
            )
    for member in added:
        console.print(f"added {member}")
    for member in already:
        console.print(f"{member} is a member already (delivery enabled)")


@list_app.command("remove")
def remove(address: str, members: list[str], data_dir: DirOption = DEFAULT_DIR) -> None:
    """Remove members."""
    from jitaku.store import lists

    with open_database(load_config(data_dir)).transaction() as connection:
        found = lists.get_list(connection, parse_address(address))
        removed, missing = lists.remove_members(connection, found.id, [parse_address(m) for m in members])
    for member in removed:
        console.print(f"removed {member}")
    if missing:
        raise CliError(f"not members of {found.address}: {', '.join(missing)}")


@list_app.command("member")
def member(
    address: str,
    member: str,
    data_dir: DirOption = DEFAULT_DIR,
    self_copy: Annotated[bool | None, typer.Option("--self-copy/--no-self-copy", help="Get one's own posts.")] = None,
    enabled: Annotated[bool | None, typer.Option("--enable/--disable", help="Deliver to this member.")] = None,
    digest: Annotated[bool | None, typer.Option("--digest/--no-digest", help="One daily digest instead.")] = None,
) -> None:
    """Change one member's settings."""
    from jitaku.store import lists

    asked = {"self_copy": self_copy, "digest": digest, "enabled": enabled}
    values: dict[str, object] = {key: value for key, value in asked.items() if value is not None}
    if enabled is not None:
        reason = None if enabled else "disabled by owner"
        values.update(bounce_score=0.0, bounce_at=None, disabled_reason=reason)
    if not values:
        raise CliError("nothing to change: give --self-copy/--no-self-copy, --enable/--disable or --digest/--no-digest")
    with open_database(load_config(data_dir)).transaction() as connection:
        found = lists.get_list(connection, parse_address(address))
        if not lists.set_member(connection, found.id, parse_address(member), **values):
            raise CliError(f"{parse_address(member)} is not a member of {found.address}")
    said = ", ".join(f"{key} = {yes_no(value)}" for key, value in asked.items() if value is not None)
    console.print(f"{parse_address(member)}: {said}")


@list_app.command("members")
def members(address: str, data_dir: DirOption = DEFAULT_DIR, as_json: JsonOption = False) -> None:
    """The members, with delivery state and bounce score."""
    from jitaku.store import lists

    def query(connection: Connection) -> list[lists.Member]:
        return lists.members(connection, lists.get_list(connection, parse_address(address)).id)

    found = open_database(load_config(data_dir)).read_now(query)
    if as_json:
        print_json([m.as_json() for m in found])
    else:
        print_table(
            ["address", "delivery", "own posts", "bounces"],
            [
                [
                    m.address,
                    ("digest" if m.digest else "on") if m.enabled else f"off ({m.disabled_reason})",
                    m.self_copy,
                    f"{m.bounce_score:.3g}",
                ]
                for m in found
            ],
            whole={"own posts", "bounces"},
            empty=f"no members yet: jitaku list add {parse_address(address)} ADDRESS...",
        )


@list_app.command("import")
def import_(address: str, file: Path, data_dir: DirOption = DEFAULT_DIR) -> None:
    """Add members from FILE: one address per line; blank lines and # comments are skipped."""
    from jitaku import addresses
    from jitaku.store import lists

    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise CliError(f"cannot read {file}: {error}") from None
    wanted: list[str] = []
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        parsed = addresses.parse(text)
        if parsed is None:
            raise CliError(f"{file}:{number}: not a plain mail address: {text!r} (nothing imported)")
        wanted.append(addresses.normalize(str(parsed)))
    database = open_database(load_config(data_dir))
    added = already = 0
    with database.transaction() as connection:  # all or nothing
        found = lists.get_list(connection, parse_address(address))
        with Progress(console=console, transient=False) as progress:
            task = progress.add_task(f"importing into {escape(found.address)}", total=len(wanted))  # markup here
            for start in range(0, len(wanted), IMPORT_BATCH):
                batch = wanted[start : start + IMPORT_BATCH]
                new, old = lists.add_members(connection, found.id, batch)
                added, already = added + len(new), already + len(old)
                progress.advance(task, len(batch))
    were = "was a member" if already == 1 else "were members"
    console.print(f"imported {counted(added, 'member')} into {found.address} ({already} {were} already)")


@list_app.command("digest")
def digest_now(address: str, data_dir: DirOption = DEFAULT_DIR) -> None:
    """Send the digest of posts since the last one now, rather than at its daily time."""
    from jitaku.store import lists

    with open_database(load_config(data_dir)).transaction() as connection:
        lists.digest_now(connection, lists.get_list(connection, parse_address(address)).id)
    console.print(f"{parse_address(address)}: the running server sends the digest within seconds")


@list_app.command("held")
def held(address: str, data_dir: DirOption = DEFAULT_DIR, as_json: JsonOption = False) -> None:
    """Posts waiting for a moderator."""
    from jitaku.store import lists

    def query(connection: Connection) -> list[lists.Held]:
        return lists.held(connection, lists.get_list(connection, parse_address(address)).id)

    found = open_database(load_config(data_dir)).read_now(query)
    shown = [
        {
            "id": h.id,
            "received": utc_time(h.received_at),
            "sender": h.sender,
            "from": h.author,
            "subject": h.subject,
            "reason": h.reason,
        }
        for h in found
    ]
    if as_json:
        print_json(shown)
    else:
        print_table(
            ["id", "received", "from", "subject", "reason"],
            [[h["id"], h["received"], h["from"], h["subject"], h["reason"]] for h in shown],
            whole={"id", "received"},
            empty=f"no posts to {parse_address(address)} wait for a moderator",
        )


@list_app.command("approve")
def approve(address: str, held_id: int, data_dir: DirOption = DEFAULT_DIR) -> None:
    """Send a held post to the list."""
    _release(address, held_id, data_dir, "approved", None)
    console.print(f"approved {held_id}: the running server sends it to the list")


@list_app.command("reject")
def reject(
    address: str,
    held_id: int,
    data_dir: DirOption = DEFAULT_DIR,
    reason: Annotated[str | None, typer.Option(help="Told to the sender.")] = None,
    discard: Annotated[bool, typer.Option("--discard", help="Tell nobody (spam).")] = False,
) -> None:
    """Refuse a held post and tell its sender, or with --discard just drop it."""
    if discard:
        from jitaku.store import lists

        with open_database(load_config(data_dir)).transaction() as connection:
            lists.take_held(connection, lists.get_list(connection, parse_address(address)).id, held_id)
        console.print(f"discarded {held_id}")
        return
    _release(address, held_id, data_dir, "rejected", reason)
    console.print(f"rejected {held_id}")


def _release(
    address: str, held_id: int, data_dir: Path, role: Literal["approved", "rejected"], note: str | None
) -> None:
    """Hand a held post back to the list runner, which posts it or tells its sender."""
    from jitaku.store import lists

    with open_database(load_config(data_dir)).transaction() as connection:
        found = lists.get_list(connection, parse_address(address))
        sender, body = lists.take_held(connection, found.id, held_id)
        lists.add_inbox(connection, found.address, role, found.address, sender, body, time.time(), note)


@list_app.command("reindex")
def reindex(address: str, data_dir: DirOption = DEFAULT_DIR) -> None:
    """Give the posts archived before the web archive existed their page there (by Message-ID, in their thread)
    and put them in the search index; running it again does nothing more."""
    from jitaku.lists import backfill
    from jitaku.store import lists

    database = open_database(load_config(data_dir))
    found = database.read_now(lambda connection: lists.get_list(connection, parse_address(address)))
    count = backfill.reindex(database, found)
    console.print(f"{found.address}: {count} older posts given their archive page and indexed for search")


@list_app.command("archive")
def archive(address: str, data_dir: DirOption = DEFAULT_DIR, as_json: JsonOption = False) -> None:
    """Every post: number, date, from, subject."""
    from jitaku.store import lists

    def query(connection: Connection) -> list[lists.Post]:
        return lists.posts(connection, lists.get_list(connection, parse_address(address)).id)

    found = open_database(load_config(data_dir)).read_now(query)
    shown = [{"number": p.number, "date": utc_time(p.posted_at), "from": p.author, "subject": p.subject} for p in found]
    if as_json:
        print_json(shown)
    else:
        print_table(
            ["number", "date", "from", "subject"],
            [list(s.values()) for s in shown],
            whole={"number", "date"},
            empty=f"no posts to {parse_address(address)} yet",
        )
