"""`jitaku blog ...`: import the blog's posts from Markdown files, with the photos beside them, and list them; list
and moderate readers' comments."""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path
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
    utc_time,
)
from jitaku.words import counted

blog_app = typer.Typer(no_args_is_help=True, help="The blog: posts from Markdown files.")


@blog_app.command("import")
def import_(directory: Path, data_dir: DirOption = DEFAULT_DIR) -> None:
    """Add or update the posts of DIRECTORY's Markdown files, each keyed by its path there, and its media files
    (photos, PDF, audio, video); a changed slug or date, and each alias, leaves a permanent redirect from the
    old URL. One broken file: nothing is imported."""
    from jitaku.blog import permalink
    from jitaku.blog.importer import media_files, read_posts
    from jitaku.blog.source import SourceError
    from jitaku.store import blog

    config = load_config(data_dir)
    settings = config.settings.blog
    try:
        found = read_posts(directory, settings.permalink, permalink.zone(settings.timezone))
        media = media_files(directory)
    except SourceError as error:
        raise CliError(f"{error} (nothing imported)") from None
    now = time.time()
    try:
        with open_database(config).transaction() as connection:  # all or nothing
            done = blog.import_posts(connection, found, now)
            stored = sum(blog.put_media(connection, path, kind, _read(file), now) for file, path, kind in media)
    except blog.BlogError as error:
        raise CliError(f"{error} (nothing imported)") from None
    for old, new in done.redirected:
        console.print(f"redirect {old} -> {new}")
    console.print(
        f"imported {counted(len(found), 'post')} from {directory}: {len(done.added)} new,"
        f" {len(done.updated)} updated, {len(done.unchanged)} unchanged"
    )
    if media:
        console.print(f"kept {counted(len(media), 'media file')}: {stored} new or changed")


def _read(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as error:
        raise CliError(f"{file}: cannot read: {error.strerror or error} (nothing imported)") from None


@blog_app.command("posts")
def posts(data_dir: DirOption = DEFAULT_DIR, as_json: JsonOption = False) -> None:
    """Every post, newest first, drafts too: id, date, title, tags and URL."""
    from jitaku.store import blog

    found = open_database(load_config(data_dir)).read_now(blog.posts)
    shown = [
        {
            "id": post.id,
            "path": post.path,
            "title": post.title,
            "slug": post.slug,
            "date": utc_time(post.published_at),
            "tags": list(post.tags),
            "draft": post.draft,
            "url": post.url,
        }
        for post in found
    ]
    if as_json:
        print_json(shown)
    else:
        print_table(
            ["id", "date", "title", "tags", "draft", "url"],
            [[s["id"], s["date"], s["title"], s["tags"], s["draft"], s["url"]] for s in shown],
            whole={"id", "date", "draft"},
            empty="no posts yet: jitaku blog import DIR",
        )


class Action(StrEnum):
    approve = "approve"
    spam = "spam"
    delete = "delete"


DONE = {Action.approve: "is published", Action.spam: "is marked as spam", Action.delete: "is deleted"}


@blog_app.command("comments")
def comments(
    action: Annotated[Action | None, typer.Argument(help="approve, spam or delete the comment ID")] = None,
    comment_id: Annotated[int | None, typer.Argument(metavar="ID", show_default=False)] = None,
    pending: Annotated[bool, typer.Option("--pending", help="Only the comments held for moderation.")] = False,
    data_dir: DirOption = DEFAULT_DIR,
    as_json: JsonOption = False,
) -> None:
    """Readers' comments, oldest first (only those held for moderation with --pending); or `approve ID` (its
    author's next ones are then published directly under the moderation "first"), `spam ID` (hidden, kept),
    `delete ID` (with its replies, for good). The running site shows a change within 2 s."""
    from jitaku.store import comments as stored

    config = load_config(data_dir)
    if action is not None:
        if comment_id is None:
            raise CliError(f"which comment? jitaku blog comments {action.value} ID")
        # the store's own names: a status spelt here on its own could drift from what the site shows
        status = {Action.approve: stored.PUBLISHED, Action.spam: stored.SPAM, Action.delete: None}[action]
        with open_database(config).transaction() as connection:
            done = (
                stored.delete(connection, comment_id)
                if status is None
                else stored.set_status(connection, comment_id, status)
            )
        if not done:
            raise CliError(f"no comment {comment_id}: see jitaku blog comments")
        console.print(f"comment {comment_id} {DONE[action]}")
        return
    found = open_database(config).read_now(lambda s: stored.listed(s, pending))
    shown = [
        {
            "id": comment.id,
            "post": comment.post_url,
            "author": comment.author,
            "email": comment.email,
            "url": comment.url,
            "body": comment.body,
            "status": comment.status,
            "reason": comment.reason,  # why it was held or judged spam (CONTRACTS allows keys beyond its own)
            "parent": comment.parent_id,
            "date": utc_time(comment.created_at),
        }
        for comment in found
    ]
    if as_json:
        print_json(shown)
    else:
        print_table(
            ["id", "date", "post", "author", "status", "body"],
            [[s["id"], s["date"], s["post"], s["author"], s["status"], s["body"]] for s in shown],
            whole={"id", "date", "status"},
            empty="no comments held for moderation" if pending else "no comments yet",
        )
