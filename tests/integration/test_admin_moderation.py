"""The owner's admin pages for comments, redirects, lists and the queue (issue 22) against a real `jitaku serve`:
bulk moderation changes what the site shows, a held list post approved on the web reaches the members (through
the list runner), and every form refuses a POST without its CSRF token (403), with bad input (400) or from a
stranger without an admin's login (to /login), changing nothing; each page in Chromium with axe-core."""

from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.browser import Chromium
from tests.integration.forms import csrf_of, submit
from tests.integration.harness import Jitaku
from tests.integration.test_lists import MEMBER_DOMAINS, Members, header, post
from tests.integration.test_outbound import publish_dkim
from tests.integration.test_outbound import submit as submit_mail
from tests.peers import wait_until

LIST = "sota@example.test"
ARTIFACTS = Path(__file__).parent.parent.parent / "artifacts" / "screenshots"
SIZES = (("phone", 375, True), ("desktop", 1280, False))
POST = "---\ntitle: 自宅サーバー\ndate: 2024-05-01\nslug: jitaku\n---\n本文です。\n"
POST_PATH = "/2024/05/jitaku/"
READERS = (
    {"name": "読者", "email": "reader@remote.test", "body": "いい記事です"},
    {"name": "Spammer", "email": "spam@remote.test", "body": "cheap pills"},
    {"name": "Hana", "email": "hana@remote.test", "body": "ありがとう"},
)


def base(server: Jitaku) -> str:
    return f"http://127.0.0.1:{server.web_port}"


def comments(server: Jitaku) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(server.cli("blog", "comments", "--json").stdout)
    return found


def held(server: Jitaku) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(server.cli("list", "held", LIST, "--json").stdout)
    return found


def write_comments(server: Jitaku, post_id: int) -> None:
    """READERS' comments sent through the site's form as browsers send it (a token cookie each, a few seconds)."""
    browsers = [httpx.Client(base_url=base(server), timeout=10) for _ in READERS]
    try:
        for browser in browsers:
            assert browser.get(POST_PATH).status_code == 200
        time.sleep(2.1)  # the form's minimum time
        for browser, reader in zip(browsers, READERS, strict=True):
            saved = browser.post(f"/comments/{post_id}", data={**reader, "url": "", "website": ""})
            assert saved.status_code == 200 and "held for moderation" in saved.text, saved.text[:500]
    finally:
        for browser in browsers:
            browser.close()


@pytest.fixture
def site(jitaku_factory, dns_zone, sink_factory, tmp_path: Path) -> tuple[Jitaku, Members]:
    """A running jitaku holding what each admin page shows: a post with three held comments (moderation "all"),
    list sota@ with a member whose MX is an smtp-sink and a held post from a stranger, a message waiting in the
    queue for a server that does not answer, and a redirect."""
    zone, dns_port = dns_zone
    sink = sink_factory()
    server: Jitaku = jitaku_factory(dns_port)
    server.settings["delivery"] = {"port": sink.port}
    server.settings["blog"] = {"moderation": "all"}
    server.write_config()
    server.init("alice@example.test", "bob@example.org")
    publish_dkim(server, zone)
    for domain in MEMBER_DOMAINS:
        zone.add(f"{domain}. 300 IN MX 10 mx.{domain}.")
        zone.add(f"mx.{domain}. 300 IN A 127.0.0.1")
        zone.add(f'{domain}. 300 IN TXT "v=spf1 ip4:127.0.0.1 -all"')
    zone.add("down.test. 300 IN MX 10 mx.down.test.")
    zone.add("mx.down.test. 300 IN A 127.0.0.9")  # nothing listens there: the message waits in the queue
    posts = tmp_path / "posts"
    posts.mkdir()
    (posts / "a.md").write_text(POST)
    server.cli("blog", "import", str(posts))
    server.cli("web", "redirect", "add", "/old-jitaku/", POST_PATH)
    server.cli("list", "create", LIST, "--name", "SOTA Japan", "--owner", "alice@example.test")
    server.cli("list", "add", LIST, "carol@members.test")
    server.start()
    [blog_post] = json.loads(server.cli("blog", "posts", "--json").stdout)
    write_comments(server, blog_post["id"])
    post(server, "frank@other.test", "Please approve", "--header", "From: Frank <frank@other.test>")
    submit_mail(server, "dan@down.test")
    wait_until(lambda: held(server) and server.queue(), timeout=20)
    return server, Members(sink)


def admin(server: Jitaku) -> httpx.Client:
    """The owner's browser, trusted on loopback (as the embedded default is)."""
    return httpx.Client(base_url=base(server), timeout=90)


def by_author(server: Jitaku) -> dict[str, str]:
    return {c["author"]: c["status"] for c in comments(server)}


def test_bulk_moderation_changes_what_the_site_shows(site) -> None:
    server, _members = site
    with admin(server) as client:
        queue = client.get("/admin/comments")
        assert queue.status_code == 200
        for reader in READERS:
            assert reader["name"] in queue.text and reader["email"] in queue.text
        assert f'href="{POST_PATH}"' in queue.text and "自宅サーバー" in queue.text
        assert "Every comment waits for approval" in queue.text  # why each was held
        ids = {c["author"]: str(c["id"]) for c in comments(server)}
        assert "いい記事です" not in client.get(POST_PATH).text

        def act(action: str, *authors: str, tab: str = "pending") -> httpx.Response:
            page = client.get(f"/admin/comments?status={tab}")
            data = {"action": action, "status": tab, "csrf": csrf_of(page.text)}
            return client.post("/admin/comments", data={**data, "id": [ids[author] for author in authors]})

        approved = act("approve", "読者", "Hana")
        assert approved.status_code == 303
        assert "2 comments published." in client.get(approved.headers["location"]).text
        assert by_author(server) == {"読者": "published", "Spammer": "pending", "Hana": "published"}
        shown = client.get(POST_PATH).text  # at once: the site's kept page was dropped
        assert "いい記事です" in shown and "ありがとう" in shown and "cheap pills" not in shown

        assert act("spam", "Spammer").status_code == 303
        assert by_author(server)["Spammer"] == "spam"
        spam_tab = client.get("/admin/comments?status=spam").text
        assert "cheap pills" in spam_tab and "spam (1)" in spam_tab
        assert "No comment waits for moderation." in client.get("/admin/comments").text

        assert act("delete", "Hana", tab="published").status_code == 303
        assert "Hana" not in by_author(server)
        assert "ありがとう" not in client.get(POST_PATH).text


def test_a_held_list_post_approved_on_the_web_reaches_the_member(site) -> None:
    server, members = site
    address = f"/admin/lists/{LIST}"
    with admin(server) as client:
        index = client.get("/admin/lists")
        assert index.status_code == 200 and LIST in index.text and "SOTA Japan" in index.text
        page = client.get(address)
        assert page.status_code == 200
        assert "frank@other.test" in page.text and "Please approve" in page.text
        assert "the sender is not a member" in page.text and "carol@members.test" in page.text
        [waiting] = held(server)
        assert members.copies() == []
        answer = submit(client, address, {"id": str(waiting["id"]), "action": "approve"}, action=f"{address}/held")
        assert answer.status_code == 303 and "Approved" in client.get(answer.headers["location"]).text
    copy = wait_until(lambda: members.copies_for("carol@members.test"), timeout=20)[0]
    assert header(copy, "Subject") == "[sota:00001] Please approve"
    assert held(server) == []

    post(server, "frank@other.test", "Buy now", "--header", "From: Frank <frank@other.test>")
    [waiting] = wait_until(lambda: held(server), timeout=20)
    with admin(server) as client:
        data = {"id": str(waiting["id"]), "action": "reject", "note": "off topic"}
        assert submit(client, address, data, action=f"{address}/held").status_code == 303
    refusal = wait_until(lambda: members.copies_for("frank@other.test"), timeout=20)[0]
    assert "rejected" in header(refusal, "Subject") and b"off topic" in refusal
    assert len(members.copies_for("carol@members.test")) == 1 and held(server) == []


def test_list_settings_and_members_change_from_the_web_and_bad_input_changes_nothing(site) -> None:
    server, _members = site
    address = f"/admin/lists/{LIST}"

    def shown() -> dict[str, Any]:
        return dict(json.loads(server.cli("list", "show", LIST, "--json").stdout)[0])

    settings = {
        "name": "SOTA",
        "subject_tag": "[sota %d]",
        "reply_to": "sender",
        "dmarc": "wrap",
        "owners": "alice@example.test, bob@example.org",
        "bounce_threshold": "3",
        "archive": "members",
    }
    with admin(server) as client:
        page = client.get(address).text
        for form in ("settings", "members", "held"):
            assert f'action="{address}/{form}"' in page  # the page's forms post where these tests do
        before = shown()
        wrong = submit(client, address, {**settings, "subject_tag": "[sota]"}, action=f"{address}/settings")
        assert wrong.status_code == 400 and "needs exactly one %d" in wrong.text and "nothing saved" in wrong.text
        assert shown() == before
        saved = submit(client, address, settings, action=f"{address}/settings")
        assert saved.status_code == 303 and "Settings saved." in client.get(saved.headers["location"]).text
        after = shown()
        assert (after["name"], after["subject_tag"], after["reply_to"], after["dmarc"]) == (
            "SOTA",
            "[sota %d]",
            "sender",
            "wrap",
        )
        assert after["owners"] == ["alice@example.test", "bob@example.org"] and after["bounce_threshold"] == 3.0
        assert after["archive"] == "members"

        members = f"{address}/members"
        bad = submit(client, address, {"action": "add", "addresses": "dave@members.test\nnot an address"}, members)
        assert bad.status_code == 400 and "Not a plain mail address" in bad.text
        assert "dave@members.test" not in server.cli("list", "members", LIST).stdout
        assert submit(client, address, {"action": "add", "addresses": "dave@members.test"}, members).status_code == 303
        assert (
            submit(client, address, {"action": "disable", "member": "carol@members.test"}, members).status_code == 303
        )
        listed = {m["address"]: m for m in json.loads(server.cli("list", "members", LIST, "--json").stdout)}
        assert set(listed) == {"carol@members.test", "dave@members.test"}
        assert (listed["carol@members.test"]["enabled"], listed["carol@members.test"]["disabled_reason"]) == (
            False,
            "disabled by owner",
        )
        assert "disabled by owner" in client.get(address).text
        for action in ("digest", "no-self-copy"):
            changed = submit(client, address, {"action": action, "member": "dave@members.test"}, members)
            assert changed.status_code == 303, changed.text
        listed = {m["address"]: m for m in json.loads(server.cli("list", "members", LIST, "--json").stdout)}
        assert (listed["dave@members.test"]["digest"], listed["dave@members.test"]["self_copy"]) == (True, False)
        assert submit(client, address, {"action": "remove", "member": "dave@members.test"}, members).status_code == 303
        assert "dave@members.test" not in server.cli("list", "members", LIST).stdout
        assert client.get("/admin/lists/nobody@example.test").status_code == 404


def test_the_queue_page_retries_and_deletes(site) -> None:
    server, _members = site
    [waiting] = server.queue()
    with admin(server) as client:
        page = client.get("/admin/queue")
        assert page.status_code == 200 and waiting["id"] in page.text and "dan@down.test" in page.text
        retried = submit(client, "/admin/queue", {"id": waiting["id"], "action": "retry"})
        assert retried.status_code == 303 and "is due now" in client.get(retried.headers["location"]).text
        assert submit(client, "/admin/queue", {"id": "NOSUCH", "action": "delete"}).status_code == 404
        assert submit(client, "/admin/queue", {"id": waiting["id"], "action": "explode"}).status_code == 400
        assert [m["id"] for m in server.queue()] == [waiting["id"]]
        deleted = submit(client, "/admin/queue", {"id": waiting["id"], "action": "delete"})
        assert deleted.status_code == 303
    assert server.queue() == []


def test_redirects_are_added_and_removed_and_the_links_checked(site) -> None:
    server, _members = site

    def redirects() -> dict[str, str]:
        return {r["old"]: r["new"] for r in json.loads(server.cli("web", "redirect", "list", "--json").stdout)}

    with admin(server) as client:
        page = client.get("/admin/redirects")
        assert page.status_code == 200 and "/old-jitaku/" in page.text
        for old, new, why in (
            ("https://evil.test/", POST_PATH, "must be a path on this site"),
            ("/a b/", POST_PATH, "must not hold spaces"),
            (POST_PATH, "/elsewhere/", "is a published post's URL"),
            ("/loop/", "/loop/", "would lead back"),
        ):
            refused = submit(client, "/admin/redirects", {"old": old, "new": new})
            said = html.unescape(refused.text)
            assert refused.status_code == 400 and why in said and "nothing changed" in said
        assert redirects() == {"/old-jitaku/": POST_PATH}
        added = submit(client, "/admin/redirects", {"old": "/日記/", "new": "/old-jitaku/"})
        assert added.status_code == 303
        assert redirects() == {"/old-jitaku/": POST_PATH, "/日記/": POST_PATH}  # to the end of the chain
        moved = client.get("/%E6%97%A5%E8%A8%98/")
        assert moved.status_code in (301, 308) and moved.headers["location"] == POST_PATH
        removed = submit(client, "/admin/redirects", {"old": "/old-jitaku/"}, action="/admin/redirects/remove")
        assert removed.status_code == 303 and redirects() == {"/日記/": POST_PATH}

        checked = submit(client, "/admin/redirects", {}, action="/admin/redirects/check")
        assert checked.status_code == 303
        report = client.get("/admin/redirects").text
        assert "all answer 200" in report and "internal URLs of http://127.0.0.1:" in report


# Every admin form: its page, its action and a valid form, which the POSTs below send without a valid token
FORMS = (
    ("/admin/comments", "/admin/comments", {"action": "approve", "status": "pending", "id": "1"}),
    ("/admin/redirects", "/admin/redirects", {"old": "/forged/", "new": POST_PATH}),
    ("/admin/redirects", "/admin/redirects/remove", {"old": "/old-jitaku/"}),
    ("/admin/redirects", "/admin/redirects/check", {}),
    (f"/admin/lists/{LIST}", f"/admin/lists/{LIST}/settings", {"name": "Forged", "subject_tag": "[x:%d]"}),
    (f"/admin/lists/{LIST}", f"/admin/lists/{LIST}/members", {"action": "add", "addresses": "eve@evil.test"}),
    (f"/admin/lists/{LIST}", f"/admin/lists/{LIST}/held", {"action": "discard", "id": "1"}),
    ("/admin/queue", "/admin/queue", {"action": "delete", "id": "X"}),
)


def test_every_admin_form_refuses_a_post_without_its_token_and_bad_input_changing_nothing(site) -> None:
    server, _members = site

    def state() -> list[Any]:
        return [
            comments(server),
            server.cli("web", "redirect", "list", "--json").stdout,
            server.cli("list", "show", LIST, "--json").stdout,
            server.cli("list", "members", LIST, "--json").stdout,
            held(server),
            [m["id"] for m in server.queue()],
        ]

    before = state()
    with admin(server) as client:
        for page, action, data in FORMS:
            client.get(page)
            without = client.post(action, data=data)
            assert without.status_code == 403 and "Form refused" in without.text, action
            wrong = client.post(action, data={**data, "csrf": "0" * 64})
            assert wrong.status_code == 403, action
        for page, action, data in (
            ("/admin/comments", "/admin/comments", {"action": "publish", "status": "pending", "id": "1"}),
            ("/admin/comments", "/admin/comments", {"action": "approve", "status": "pending"}),
            ("/admin/comments", "/admin/comments", {"action": "approve", "status": "pending", "id": "x1"}),
            (f"/admin/lists/{LIST}", f"/admin/lists/{LIST}/settings", {"name": "Forged"}),
            (f"/admin/lists/{LIST}", f"/admin/lists/{LIST}/members", {"action": "add", "addresses": ""}),
            (f"/admin/lists/{LIST}", f"/admin/lists/{LIST}/members", {"action": "ban", "member": "carol@members.test"}),
            (f"/admin/lists/{LIST}", f"/admin/lists/{LIST}/held", {"action": "approve", "id": "²"}),
            ("/admin/queue", "/admin/queue", {"action": "retry", "id": "../x"}),
        ):
            refused = submit(client, page, data, action=action)
            assert refused.status_code == 400 and "<main>" in refused.text, (action, data, refused.text[:300])
    # from elsewhere (a Host that is not this machine's), every page and form wants an admin's login first
    with httpx.Client(base_url=base(server), headers={"host": "mail.example.test"}) as stranger:
        field = csrf_of(stranger.get("/login").text)
        for page, action, data in FORMS:
            assert stranger.get(page).headers["location"] == f"/login?next={page}"
            refused = stranger.post(action, data={**data, "csrf": field})
            assert refused.status_code == 303 and refused.headers["location"] == f"/login?next={action}", action
    assert state() == before


LAYOUT = """(() => {
  const width = document.documentElement.clientWidth;
  const past = [...document.body.querySelectorAll("*")]
    .filter(element => element.getBoundingClientRect().right > width + 0.5)
    .map(element => element.outerHTML.slice(0, 100));
  return {past, scrollWidth: document.documentElement.scrollWidth, text: document.body.innerText,
    refresh: document.querySelectorAll('meta[http-equiv="refresh" i]').length};
})()"""


def test_each_admin_page_reads_well_on_a_phone_and_a_desktop_with_no_serious_accessibility_finding(site) -> None:
    """Each page with real data in it, as the owner sees it in Chromium (screenshots in artifacts/screenshots/):
    within the screen's width, no self-reload, and no serious or critical finding of axe-core."""
    server, _members = site
    pages = {
        "status": ("/admin/", LIST),
        "health": ("/admin/health", "Checks"),
        "comments": ("/admin/comments", "Every comment waits for approval"),
        "redirects": ("/admin/redirects", "all answer 200"),
        "lists": ("/admin/lists", "SOTA Japan"),
        "list": (f"/admin/lists/{LIST}", "Please approve"),
        "queue": ("/admin/queue", "dan@down.test"),
    }
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with Chromium(timeout=120) as browser:
        browser.open(base(server) + "/admin/redirects", 1280)
        browser.click("form[action='/admin/redirects/check'] button")  # the crawl's report, on the page after
        for name, (path, expected) in pages.items():
            for size, width, mobile in SIZES:
                shot = ARTIFACTS / f"admin-{name}-{size}.png"
                shot.unlink(missing_ok=True)
                browser.open(base(server) + path, width, mobile=mobile)
                page = browser.evaluate(LAYOUT)
                browser.screenshot(shot)
                assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5_000
                assert expected in page["text"], (name, size)
                assert page["refresh"] == 0, name
                assert (page["scrollWidth"], page["past"]) == (width, []), (name, size)
                found = [v for v in browser.accessibility_violations() if v["impact"] in ("serious", "critical")]
                assert found == [], (name, size, found)
