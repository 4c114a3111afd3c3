"""A reader's comment against a real `jitaku serve`, posted with httpx as a browser without JavaScript would:
the form page sets the token cookie, the reader takes a few seconds, the POST says "saved", the daemon is
killed with -9 and the comment is still there; the owner's mail has an approve link whose button publishes it
(issue 21: "reader comments that are never lost")."""

from __future__ import annotations

import json
import re
import time
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.browser import Chromium
from tests.integration.harness import Jitaku
from tests.peers import wait_until

POST = "---\ntitle: 自宅サーバー\ndate: 2024-05-01\nslug: jitaku\n---\n本文です。\n"
OWNER = "alice@example.test"  # the first user, an admin: [blog] notify's default


def comments(server: Jitaku) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(server.cli("blog", "comments", "--json").stdout)
    return found


@pytest.mark.both_databases
def test_a_comment_survives_kill_9_and_the_owner_approves_it_from_the_mail(server: Jitaku, tmp_path: Path) -> None:
    posts = tmp_path / "posts"
    posts.mkdir()
    (posts / "a.md").write_text(POST)
    server.cli("blog", "import", str(posts))
    [post] = json.loads(server.cli("blog", "posts", "--json").stdout)
    site = f"http://127.0.0.1:{server.web_port}"
    with httpx.Client(base_url=site, timeout=10) as browser:
        page = browser.get("/2024/05/jitaku/")  # the post's own page, kept in memory and shared
        assert page.status_code == 200 and 'name="body"' in page.text and 'name="website"' in page.text
        assert "jitaku_comment" in browser.cookies
        form = {"name": "読者", "email": "reader@remote.test", "url": "", "website": "", "body": "いい記事 *です*"}
        too_fast = browser.post(f"/comments/{post['id']}", data=form)
        assert too_fast.status_code == 403 and "very fast" in too_fast.text
        time.sleep(2.1)  # the new token the refusal set is 2 s old now
        saved = browser.post(f"/comments/{post['id']}", data=form)
        assert saved.status_code == 200 and "saved and held for moderation" in saved.text
        big = browser.post(f"/comments/{post['id']}", data={**form, "body": "x" * 20001})
        assert big.status_code == 413 and "20,000 bytes" in big.text
    server.kill9()
    server.start()
    [comment] = comments(server)
    assert (comment["post"], comment["author"], comment["body"], comment["status"]) == (
        "/2024/05/jitaku/",
        "読者",
        "いい記事 *です*",
        "pending",
    )

    def notification() -> str | None:
        for listed in server.mailbox(OWNER):
            text = message_from_bytes(server.message(OWNER, listed["uid"]), policy=default_policy)
            body = text.get_content()  # type: ignore[attr-defined]
            if "/approve?" in body:
                return str(body)
        return None

    mail = wait_until(notification)
    link = re.search(r"https?://[^/\s]+(/comments/\d+/approve\?\S+)", mail)
    assert link is not None and "いい記事" in mail
    site = f"http://127.0.0.1:{server.web_port}"  # bound anew by the restart
    with httpx.Client(base_url=site, timeout=10) as owner:
        button = owner.get(link.group(1))
        assert button.status_code == 200 and 'method="post"' in button.text
        assert comments(server)[0]["status"] == "pending"  # the GET changed nothing
        done = owner.post(link.group(1))
        assert done.status_code == 200 and "is published" in done.text
        shown = owner.get("/2024/05/jitaku/")
        assert "いい記事 <em>です</em>" in shown.text
    assert comments(server)[0]["status"] == "published"


def test_a_reader_on_a_phone_without_javascript_comments_and_it_outlives_kill_9(server: Jitaku, tmp_path: Path) -> None:
    """Headless Chromium at a phone's width with the page's script off: typed, waited, sent; the owner approves
    it with the CLI, the daemon is killed with -9, and the comment is on the page after the restart. axe-core
    finds nothing serious on the form's page."""
    posts = tmp_path / "posts"
    posts.mkdir()
    (posts / "a.md").write_text(POST)
    server.cli("blog", "import", str(posts))
    [post] = json.loads(server.cli("blog", "posts", "--json").stdout)
    with Chromium() as browser:
        browser.scripts(False)
        browser.open(f"http://127.0.0.1:{server.web_port}/2024/05/jitaku/", width=390, mobile=True)
        browser.type_into("#comment-name", "スマホの読者")
        browser.type_into("#comment-email", "phone@remote.test")
        browser.type_into("#comment-body", "スマホから書きました。")
        time.sleep(2.1)
        browser.click(".comment-form button[type=submit]")
        assert "held for moderation" in browser.evaluate("document.body.innerText")
        [comment] = comments(server)
        server.cli("blog", "comments", "approve", str(comment["id"]))
        server.kill9()
        server.start()
        browser.open(f"http://127.0.0.1:{server.web_port}/2024/05/jitaku/", width=390, mobile=True)
        assert "スマホから書きました。" in browser.evaluate("document.body.innerText")
        browser.scripts(True)
        for page in ("/2024/05/jitaku/", f"/comments/{post['id']}?reply={comment['id']}"):  # the post; a reply's form
            browser.open(f"http://127.0.0.1:{server.web_port}{page}", width=390, mobile=True)
            serious = [v for v in browser.accessibility_violations() if v["impact"] in ("serious", "critical")]
            assert serious == [], page
