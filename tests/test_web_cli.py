"""`jitaku web redirect add|list|remove` and `jitaku web check-links` as the owner uses them: redirects that
never chain nor shadow a post, one-line refusals that change nothing, and a crawl of a small site (http.server in
a thread) that names each broken link and the page linking to it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest

from jitaku.store import Database, blog
from jitaku.web.links import check_links
from tests.test_blog_cli import HELLO, JITAKU_POST, jitaku


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A data directory whose blog has two published posts: /2024/05/hello/ and /2024/06/jitaku-server/."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "jitaku.toml").write_text('domains = ["example.test"]\n[blog]\ntimezone = "Asia/Tokyo"\n')
    posts = tmp_path / "posts"
    posts.mkdir()
    (posts / "hello.md").write_text(HELLO)
    (posts / "jitaku.md").write_text(JITAKU_POST)
    result = jitaku(data, "blog", "import", str(posts))
    assert result.returncode == 0, result.stderr
    return data


def redirects(data: Path) -> list[dict[str, str]]:
    result = jitaku(data, "web", "redirect", "list", "--json")
    assert result.returncode == 0, result.stderr
    found: list[dict[str, str]] = json.loads(result.stdout)
    return found


def version(data: Path) -> int:
    database = Database(f"sqlite:///{data / 'jitaku.db'}")
    try:
        return database.read_now(blog.current_version)
    finally:
        database.close()


def test_add_list_and_remove_a_redirect(data: Path) -> None:
    before = version(data)
    result = jitaku(data, "web", "redirect", "add", "/2019/05/旧い記事/", "/2024/05/hello/")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "redirect /2019/05/旧い記事/ -> /2024/05/hello/"
    assert version(data) > before  # the running site drops its cached pages
    found = redirects(data)
    assert [set(r) for r in found] == [{"old", "new", "created"}] * 2
    assert {r["old"]: r["new"] for r in found} == {
        "/2019/05/旧い記事/": "/2024/05/hello/",
        "/blog/2024/jitaku.html": "/2024/06/jitaku-server/",  # the import's alias
    }
    table = jitaku(data, "web", "redirect", "list")
    assert "/2019/05/旧い記事/" in table.stdout and "/2024/05/hello/" in table.stdout
    result = jitaku(data, "web", "redirect", "remove", "/2019/05/%E6%97%A7%E3%81%84%E8%A8%98%E4%BA%8B/")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "removed the redirect from /2019/05/旧い記事/"
    assert [r["old"] for r in redirects(data)] == ["/blog/2024/jitaku.html"]
    again = jitaku(data, "web", "redirect", "remove", "/2019/05/旧い記事/")
    assert again.returncode == 1
    assert again.stderr == "jitaku: no redirect from /2019/05/旧い記事/ (see jitaku web redirect list)\n"


def test_a_new_url_that_itself_redirects_is_followed_to_its_end(data: Path) -> None:
    assert jitaku(data, "web", "redirect", "add", "/a/", "/2024/05/hello/").returncode == 0
    result = jitaku(data, "web", "redirect", "add", "/b/", "/a/")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "redirect /b/ -> /2024/05/hello/ (as /a/ redirects there)"
    # A redirect to /c/, which then redirects itself: it goes straight to /c/'s end from then on (no chains)
    assert jitaku(data, "web", "redirect", "add", "/d/", "/c/").returncode == 0
    assert jitaku(data, "web", "redirect", "add", "/c/", "/2024/06/jitaku-server/").returncode == 0
    assert {r["old"]: r["new"] for r in redirects(data)} == {
        "/a/": "/2024/05/hello/",
        "/b/": "/2024/05/hello/",
        "/c/": "/2024/06/jitaku-server/",
        "/d/": "/2024/06/jitaku-server/",
        "/blog/2024/jitaku.html": "/2024/06/jitaku-server/",
    }


@pytest.mark.parametrize(
    ("old", "new", "error"),
    [
        ("/2024/05/hello/", "/elsewhere/", "/2024/05/hello/ is a published post's URL: it cannot redirect"),
        ("old/", "/2024/05/hello/", "OLD must be a path on this site, starting with one /: 'old/'"),
        ("/old/", "//evil.test/", "NEW must be a path on this site, starting with one /: '//evil.test/'"),
        ("/old/", "https://evil.test/", "NEW must be a path on this site, starting with one /: 'https://evil.test/'"),
        ("/old/?p=1", "/2024/05/hello/", "OLD must be a path alone, without ?query or #fragment: '/old/?p=1'"),
        ("/old/", "/old/", "/old/ -> /old/ would lead back to /old/"),
        ("/%FF/", "/2024/05/hello/", "OLD has a %-escape that is not UTF-8: '/%FF/'"),
    ],
)
def test_a_redirect_that_cannot_work_is_refused_in_one_line_and_changes_nothing(
    data: Path, old: str, new: str, error: str
) -> None:
    before = redirects(data)
    result = jitaku(data, "web", "redirect", "add", old, new)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"jitaku: {error}" + (" (nothing changed)" if "lead" in error or "URL:" in error else "")
    ]
    assert redirects(data) == before


def test_a_loop_of_two_redirects_is_refused(data: Path) -> None:
    assert jitaku(data, "web", "redirect", "add", "/a/", "/b/").returncode == 0
    result = jitaku(data, "web", "redirect", "add", "/b/", "/a/")
    assert result.returncode == 1
    assert result.stderr == "jitaku: /b/ -> /a/ would lead back to /b/ (nothing changed)\n"


# A small site: "/" links to a page, a Japanese page, a photo, a missing page, a redirect of two hops and another
# site; the sitemap names a page nothing links to, whose stylesheet is missing.
PAGES = {
    "/": '<a href="/ok.html">ok</a> <a href="/日記/">日記</a> <img src="photo.png"> <a href="/missing.html#x">x</a>'
    ' <a href="/chain">c</a> <a href="https://elsewhere.test/">far</a> <a href="mailto:a@example.test">m</a>'
    ' <a href="#top">top</a> <a href="/public-moved">p</a> <a href="/loop">l</a>',
    "/ok.html": '<a href="/">home</a> <a href="/missing.html">again</a> <link rel="canonical" href="https://public.test/ok.html">'
    ' <a href="https://public.test/gone/">by the public name</a>',
    "/日記/": '<link rel="alternate" href="/feed.atom">',
    "/feed.atom": "<feed/>",
    "/photo.png": "PNG",
    "/orphan.html": '<link rel="stylesheet" href="/style.css">',
    "/sitemap.xml": '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>{base}/orphan.html</loc>'
    "</url></urlset>",
}
# /public-moved goes to the site's public name, which is checked at the address crawled
MOVED = {"/chain": "/moved", "/moved": "/ok.html", "/public-moved": "https://public.test/ok.html", "/loop": "/loop"}


class Site(BaseHTTPRequestHandler):
    asked: list[str] = []
    pages = PAGES

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = unquote(self.path)
        self.asked.append(path)
        if path in MOVED:
            self.send_response(301)
            self.send_header("Location", MOVED[path])
            self.end_headers()
            return
        if path not in self.pages:
            self.send_error(404)
            return
        body = self.pages[path].replace("{base}", f"http://127.0.0.1:{self.server.server_address[1]}").encode()
        self.send_response(200)
        kind = "text/html; charset=utf-8" if path.endswith(("/", ".html")) else "application/octet-stream"
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(pages: dict[str, str]) -> Iterator[str]:
    handler = type("Pages", (Site,), {"pages": pages, "asked": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def small_site() -> Iterator[str]:
    yield from serve(PAGES)


def test_the_crawl_names_each_broken_link_and_the_pages_linking_to_it(small_site: str) -> None:
    report = check_links(small_site, ["public.test"])
    assert {(b.link, b.answer, b.linked_from) for b in report.broken} == {
        ("/missing.html", "404", ("/", "/ok.html")),
        ("/gone/", "404", ("/ok.html",)),  # a link by the site's public name, checked here
        ("/style.css", "404", ("/orphan.html",)),  # found through the sitemap
        ("/loop", "more than 10 redirects", ("/",)),
    }
    assert [(c.link, c.hops, c.linked_from) for c in report.chains] == [("/chain", 2, "/")]
    # /, the sitemap's page, ok, 日記, photo, missing, chain, public-moved, loop, gone, feed, style: not the other
    # site nor mailto
    assert report.checked == 12
    assert not report.stopped


def test_check_links_exits_1_with_a_broken_link_and_0_on_a_sound_site(data: Path, small_site: str) -> None:
    with (data / "jitaku.toml").open("a") as config:
        config.write('[web]\nurl = "https://public.test"\n')
    result = jitaku(data, "web", "check-links", "--url", small_site)
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert any("404" in line and "/missing.html" in line and "/ (and 1 more page)" in line for line in lines)
    assert any("/style.css" in line and "/orphan.html" in line for line in lines)
    assert "note: /chain takes 2 redirects (linked from /)" in lines
    assert lines[-1] == "4 broken links of 12 URLs checked"
    sound = {path: page for path, page in PAGES.items() if path in ("/", "/photo.png")}
    sound["/"] = '<a href="/">home</a> <img src="/photo.png">'
    for base in serve(sound):
        result = jitaku(data, "web", "check-links", "--url", base)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.strip() == f"all 2 internal URLs answer 200 ({base})"


def test_check_links_on_a_site_that_does_not_answer_says_so_in_one_line(data: Path) -> None:
    result = jitaku(data, "web", "check-links", "--url", "http://127.0.0.1:9", "--timeout", "2")
    assert result.returncode == 1
    assert result.stderr.startswith("jitaku: cannot reach http://127.0.0.1:9/")
    assert result.stderr.rstrip().endswith("(is jitaku serve running?)") and len(result.stderr.splitlines()) == 1


def test_a_link_quoted_twice_is_broken_though_its_once_unquoted_form_answers(small_site: str) -> None:
    """/tags/%25E6%2597%25A5%25E8%25A8%2598/ is not /tags/日記/: a browser asks for it as it is, and so does the
    crawl, which links as written in Japanese or quoted once find all the same."""
    pages = {
        "/": '<a href="/日記/">raw</a> <a href="/%E6%97%A5%E8%A8%98/">once</a>'
        ' <a href="/%25E6%2597%25A5%25E8%25A8%2598/">twice</a>',
        "/日記/": "<p>日記</p>",
    }
    for base in serve(pages):
        report = check_links(base)
        assert [(b.link, b.answer) for b in report.broken] == [("/%25E6%2597%25A5%25E8%25A8%2598/", "404")]
        assert report.checked == 3  # /, /日記/ (linked twice, one URL) and the broken one


def test_check_links_bounds_its_crawl(small_site: str) -> None:
    report = check_links(small_site, max_pages=3)
    assert report.checked == 3 and report.stopped


def test_check_links_stops_at_its_time_limit(small_site: str) -> None:
    """The admin's button waits for the report: past its time limit the crawl stops as at its page bound."""
    report = check_links(small_site, time_limit=0.0)
    assert report.checked == 0 and report.stopped
    assert check_links(small_site, ["public.test"], time_limit=60.0).checked == 12
