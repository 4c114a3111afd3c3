"""`jitaku web ...`: keep every URL ever published working: redirects made by hand, and a crawl of the running
site that lists the internal links that do not answer."""

from __future__ import annotations

import time
from typing import Annotated
from urllib.parse import urlsplit

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
from jitaku.config import Config
from jitaku.words import counted

web_app = typer.Typer(no_args_is_help=True, help="The web site: redirects and a check of its links.")
redirect_app = typer.Typer(no_args_is_help=True, help="Old URLs that answer 301 with where their page is now.")
web_app.add_typer(redirect_app, name="redirect")


@redirect_app.command("add")
def redirect_add(old: str, new: str, data_dir: DirOption = DEFAULT_DIR) -> None:
    """OLD answers 301 with NEW (both paths on this site, such as /2019/05/old-name/); a NEW that itself
    redirects is followed to its end. The running site follows within 2 s."""
    from jitaku.store import blog

    old_path, new_path = _decoded(old, "OLD"), _decoded(new, "NEW")
    try:
        with open_database(load_config(data_dir)).transaction() as connection:
            before = blog.redirect_for(connection, old_path)
            end = blog.add_redirect(connection, old_path, new_path, time.time())
    except blog.BlogError as error:
        raise CliError(f"{error} (nothing changed)") from None
    followed = f" (as {new_path} redirects there)" if end != new_path else ""
    replaced = f", was -> {before}" if before is not None and before != end else ""
    console.print(f"redirect {old_path} -> {end}{followed}{replaced}")


@redirect_app.command("list")
def redirect_list(data_dir: DirOption = DEFAULT_DIR, as_json: JsonOption = False) -> None:
    """Every redirect: the old URL, where it answers now, and since when."""
    from jitaku.store import blog

    found = open_database(load_config(data_dir)).read_now(blog.kept_redirects)
    shown = [{"old": r.old, "new": r.new, "created": utc_time(r.created_at)} for r in found]
    if as_json:
        print_json(shown)
    else:
        print_table(
            ["old", "new", "created"],
            [[s["old"], s["new"], s["created"]] for s in shown],
            whole={"created"},
            empty="no redirects: jitaku web redirect add OLD NEW",
        )


@redirect_app.command("remove")
def redirect_remove(old: str, data_dir: DirOption = DEFAULT_DIR) -> None:
    """OLD redirects no more (and answers whatever the site has there, most often 404)."""
    from jitaku.store import blog

    old_path = _decoded(old, "OLD")
    with open_database(load_config(data_dir)).transaction() as connection:
        removed = blog.remove_redirect(connection, old_path)
    if not removed:
        raise CliError(f"no redirect from {old_path} (see jitaku web redirect list)")
    console.print(f"removed the redirect from {old_path}")


def _decoded(text: str, what: str) -> str:
    from jitaku.blog.paths import PathRefused, site_path

    try:
        return site_path(text, what)
    except PathRefused as refused:
        raise CliError(str(refused)) from None


UrlOption = Annotated[
    str, typer.Option("--url", help="Where the site answers (default: the first [web] listen address).")
]


@web_app.command("check-links")
def check_links(
    data_dir: DirOption = DEFAULT_DIR,
    url: UrlOption = "",
    max_pages: Annotated[int, typer.Option("--max-pages", min=1, help="Stop after this many URLs.")] = 2000,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds each request may take.")] = 10.0,
) -> None:
    """Crawl the running site from / and its sitemap, and list each internal link that does not answer 200
    (after its redirects) with a page that links to it. Exit 1 when any is broken."""
    from jitaku.web.links import CrawlError
    from jitaku.web.links import check_links as crawl

    config = load_config(data_dir)
    base, verify = (url.rstrip("/"), True) if url else _listening(config)
    if urlsplit(base).scheme not in ("http", "https") or not urlsplit(base).netloc:
        raise CliError(f"--url must be an http:// or https:// address, got {url!r}")
    public = urlsplit(config.settings.web_url).netloc
    try:
        report = crawl(base, [public], max_pages=max_pages, timeout=timeout, verify=verify)
    except CrawlError as error:
        raise CliError(f"{error} (is jitaku serve running?)") from None
    for chain in report.chains:
        console.print(f"note: {chain.link} takes {chain.hops} redirects (linked from {chain.linked_from})")
    if report.stopped:
        console.print(f"note: stopped after {counted(max_pages, 'URL')} (--max-pages): some links are unchecked")
    if report.broken:
        print_table(
            ["answer", "link", "linked from"],
            [[b.answer, b.link, _pages(b.linked_from)] for b in report.broken],
            whole={"answer"},
            empty="",
        )
        console.print(f"{counted(len(report.broken), 'broken link')} of {counted(report.checked, 'URL')} checked")
        raise typer.Exit(1)
    console.print(f"all {counted(report.checked, 'internal URL')} answer 200 ({base})")


def _pages(linked_from: tuple[str, ...]) -> str:
    more = len(linked_from) - 1
    return linked_from[0] + (f" (and {counted(more, 'more page')})" if more else "")


def _listening(config: Config) -> tuple[str, bool]:
    """The first `[web] listen` address of the running daemon, as a URL (links.reach)."""
    from jitaku import ports
    from jitaku.web.links import reach

    return reach(ports.running(config).settings.web.listen[0])
