"""`jitaku blog ...`: import the blog's posts from Markdown files, with the photos beside them, or from a
WordPress export; export them all again; list them; list and moderate readers' comments."""

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


WxrOption = Annotated[
    Path | None,
    typer.Option("--wxr", metavar="FILE", show_default=False, help="A WordPress export (Tools > Export) to import."),
]
MediaOption = Annotated[
    Path | None,
    typer.Option(
        "--media",
        metavar="DIR",
        show_default=False,
        help="With --wxr: the old site's wp-content/uploads directory, whose files the posts show.",
    ),
]


@blog_app.command("import")
def import_(
    directory: Annotated[Path | None, typer.Argument(show_default=False)] = None,
    wxr: WxrOption = None,
    media: MediaOption = None,
    data_dir: DirOption = DEFAULT_DIR,
) -> None:
    """Add or update the posts of DIRECTORY's Markdown files, each keyed by its path there, and its media files
    (photos, PDF, audio, video); a changed slug or date, and each alias, leaves a permanent redirect from the
    old URL. With --wxr FILE instead: a WordPress export's posts, pages, comments and uploads (--media), each
    old URL redirecting to its new one. One broken file: nothing is imported."""
    if (directory is None) == (wxr is None):
        raise CliError("import what? jitaku blog import DIR, or jitaku blog import --wxr FILE [--media DIR]")
    if media is not None and wxr is None:
        raise CliError("--media goes with --wxr: a directory's media files are found beside its posts")
    if wxr is not None:
        _import_wxr(wxr, media, data_dir)
        return
    assert directory is not None
    from jitaku.blog import permalink
    from jitaku.blog.importer import media_files, read_comments, read_posts, read_redirects
    from jitaku.blog.source import SourceError
    from jitaku.store import blog
    from jitaku.store import comments as stored_comments

    config = load_config(data_dir)
    settings = config.settings.blog
    try:
        found = read_posts(directory, settings.permalink, permalink.zone(settings.timezone))
        files = media_files(directory)
        kept = read_comments(directory)
        moved = read_redirects(directory)
    except SourceError as error:
        raise CliError(f"{error} (nothing imported)") from None
    now = time.time()
    try:
        with open_database(config).transaction() as connection:  # all or nothing
            done = blog.import_posts(connection, found, now)
            stored = sum(blog.put_media(connection, path, kind, _read(file), now) for file, path, kind in files)
            added = stored_comments.restore(connection, kept)
            for old, new in moved:
                blog.add_redirect(connection, old, new, now)
    except (blog.BlogError, stored_comments.UnknownPlace) as error:
        raise CliError(f"{error} (nothing imported)") from None
    for old, new in done.redirected:
        console.print(f"redirect {old} -> {new}")
    console.print(
        f"imported {counted(len(found), 'post')} from {directory}: {len(done.added)} new,"
        f" {len(done.updated)} updated, {len(done.unchanged)} unchanged"
    )
    if files:
        console.print(f"kept {counted(len(files), 'media file')}: {stored} new or changed")
    if kept:
        console.print(f"kept {counted(len(kept), 'comment')}: {added} new")
    if moved:
        console.print(f"kept {counted(len(moved), 'other redirect')}")


def _import_wxr(file: Path, media: Path | None, data_dir: Path) -> None:
    from jitaku.blog import permalink, wxr, wxr_import
    from jitaku.blog.source import SourceError
    from jitaku.store import blog, site
    from jitaku.store import comments as stored_comments

    config = load_config(data_dir)
    settings = config.settings.blog
    timezone = permalink.zone(settings.timezone)
    if media is not None and not media.is_dir():
        raise CliError(f"{media}: not a directory (nothing imported)")
    try:
        planned = wxr_import.plan(wxr.read(file, timezone), media, settings.permalink, timezone)
    except SourceError as error:
        raise CliError(f"{error} (nothing imported)") from None
    now = time.time()
    try:
        with open_database(config).transaction() as connection:  # all or nothing
            done = blog.import_posts(connection, planned.posts, now)
            stored = sum(blog.put_media(connection, path, kind, _read(f), now) for f, path, kind in planned.media)
            added = stored_comments.restore(connection, planned.comments)
            for old, new in planned.redirects:
                blog.add_redirect(connection, old, new, now)
    except (blog.BlogError, stored_comments.UnknownPlace) as error:
        raise CliError(f"{file}: {error} (nothing imported)") from None
    for line in planned.left_out:
        console.print(f"left out: {line}")
    pages = sum(post.kind == site.PAGE for post in planned.posts)
    moved = sum(alias != post.url for post in planned.posts for alias in post.aliases) + len(planned.redirects)
    console.print(
        f"imported from {file}: {counted(len(planned.posts) - pages, 'post')}, {counted(pages, 'page')}"
        f" ({len(done.added)} new, {len(done.updated)} updated, {len(done.unchanged)} unchanged),"
        f" {counted(len(planned.comments), 'comment')} ({added} new),"
        f" {counted(len(planned.media), 'media file')} ({stored} new or changed),"
        f" {counted(moved, 'old URL')} redirected"
    )


def _read(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as error:
        raise CliError(f"{file}: cannot read: {error.strerror or error} (nothing imported)") from None


@blog_app.command("export")
def export(directory: Path, data_dir: DirOption = DEFAULT_DIR) -> None:
    """Write every post and page (Markdown with front matter; a post from WordPress as its HTML), every media
    file and every comment (comments.json) into DIRECTORY, new or empty: `jitaku blog import DIRECTORY` into
    a fresh data directory with the same [blog] settings gives the same site."""
    from jitaku.blog.export import ExportError
    from jitaku.blog.export import export as write

    config = load_config(data_dir)
    try:
        done = open_database(config).read_now(lambda connection: write(connection, directory))
    except ExportError as error:
        raise CliError(f"{error} (nothing exported)") from None
    except OSError as error:
        raise CliError(f"{error.filename or directory}: cannot write: {error.strerror or error}") from None
    for line in done.not_again:
        console.print(f"warning: {line}")
    console.print(
        f"exported to {directory}: {counted(done.posts, 'post')}, {counted(done.pages, 'page')},"
        f" {counted(done.media, 'media file')}, {counted(done.comments, 'comment')},"
        f" {counted(done.redirects, 'other redirect')}"
    )


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
