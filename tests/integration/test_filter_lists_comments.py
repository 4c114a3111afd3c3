"""The lists and the blog's comments use the MX's filters (issue 23), against a real `jitaku serve` with a real
spamd and rspamd on loopback: a list post the filters judge spam is held for the list's owners, with the
engine's reason, and no member gets it; a plain post and an allowed sender's go out, without the X-Spam-Status
its sender wrote; a comment rspamd rejects (GTUBE) is stored as spam, one in the junk band is held with the
engine's reason, a plain one follows the moderation, and one no engine could check follows it too, saying so."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.engines.rspamd import Rspamd, rspamd_engine  # noqa: F401 (a fixture)
from tests.integration.engines.spamd import Spamd, spamd  # noqa: F401 (a fixture)
from tests.integration.harness import Jitaku
from tests.integration.test_filters import rule
from tests.integration.test_lists import LIST, MEMBER_DOMAINS, MEMBERS, Members, post
from tests.integration.test_outbound import publish_dkim
from tests.peers import free_port, wait_until

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
OWNER = "alice@example.test"
BLOG_POST = "---\ntitle: 自宅サーバー\ndate: 2024-05-01\nslug: jitaku\n---\n本文です。\n"


def held(server: Jitaku) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(server.cli("list", "held", LIST, "--json").stdout)
    return found


def comments(server: Jitaku) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(server.cli("blog", "comments", "--json").stdout)
    return found


@pytest.fixture
def spamd_lists(jitaku_factory: Any, dns_zone: Any, sink_factory: Any, spamd: Spamd) -> tuple[Jitaku, Members]:  # noqa: F811
    """test_lists.py's list server, with spamd alone as its filter and the junk band from 5 to 5000: GTUBE
    (SpamAssassin gives it 1000) is junk, not refused, so the list decides what becomes of it."""
    zone, dns_port = dns_zone
    sink = sink_factory()
    server: Jitaku = jitaku_factory(dns_port)
    server.settings["delivery"] = {"port": sink.port}
    server.settings["filters"] = {
        "junk_score": 5.0,
        "reject_score": 5000.0,
        "timeout": 10,
        "spamassassin": {"address": f"{spamd.host}:{spamd.port}"},
    }
    server.write_config()
    server.init(OWNER, "bob@example.org")
    publish_dkim(server, zone)
    for domain in MEMBER_DOMAINS:
        zone.add(f"{domain}. 300 IN MX 10 mx.{domain}.")
        zone.add(f"mx.{domain}. 300 IN A 127.0.0.1")
        zone.add(f'{domain}. 300 IN TXT "v=spf1 ip4:127.0.0.1 -all"')
    server.cli("list", "create", LIST, "--name", "SOTA Japan", "--owner", OWNER)
    server.cli("list", "add", LIST, *MEMBERS)
    server.start()
    return server, Members(sink)


def test_a_spam_post_is_held_for_the_owners_and_no_member_gets_it(spamd_lists: tuple[Jitaku, Members]) -> None:
    server, members = spamd_lists
    member = "carol@members.test"
    post(server, member, "Buy now", "--header", f"From: Carol <{member}>", "--body", GTUBE)
    [spam] = wait_until(lambda: held(server))
    assert (spam["sender"], spam["subject"]) == (member, "Buy now")
    assert spam["reason"].startswith("spam: spamassassin: SpamAssassin score ") and "GTUBE" in spam["reason"], spam
    notice = wait_until(lambda: server.mailbox(OWNER))  # alice owns the list
    assert "held for approval" in notice[0]["subject"]
    # a plain post from the same member goes out, and nobody got the spam before it
    post(server, member, "Meeting on Friday", "--header", f"From: Carol <{member}>", "--body", "See you at 7.")
    wait_until(lambda: len(members.copies()) == 3, timeout=20)
    assert all(b"Meeting on Friday" in copy and GTUBE.encode() not in copy for _s, _r, copy in members.copies())
    bob = wait_until(lambda: server.mailbox("bob@example.org"))  # the member who is our own user
    assert len(bob) == 1 and "Meeting on Friday" in bob[0]["subject"]
    # an allowed sender's post is not held, whatever it scores
    rule(server, "allow", member)
    post(server, member, "Allowed", "--header", f"From: Carol <{member}>", "--body", GTUBE)
    wait_until(lambda: len(members.copies()) == 6, timeout=20)
    assert len(held(server)) == 1


def test_a_posts_own_spam_status_reaches_no_member(spamd_lists: tuple[Jitaku, Members]) -> None:
    """The sender's "X-Spam-Status: No" would be read by a member's mail program as our word: it is dropped."""
    server, members = spamd_lists
    member = "carol@members.test"
    forged = ("--header", "X-Spam-Status: No, score=-100.0", "--header", "X-Spam-Score: -100.0")
    post(server, member, "Trust me", "--header", f"From: Carol <{member}>", *forged, "--body", "Cheap watches.")
    wait_until(lambda: len(members.copies()) == 3, timeout=20)
    [bobs] = wait_until(lambda: server.mailbox("bob@example.org"))  # the member who is our own user
    for copy in (*(copy for _s, _r, copy in members.copies()), server.message("bob@example.org", bobs["uid"])):
        assert b"Trust me" in copy and b"X-Spam-Status" not in copy and b"X-Spam-Score" not in copy, copy


def test_a_comment_in_the_junk_band_is_held_with_the_engine_s_reason(
    spamd_lists: tuple[Jitaku, Members], tmp_path: Path
) -> None:
    server, _members = spamd_lists
    post_id = blog_post(server, tmp_path)
    with reader(server) as browser:
        assert comment(browser, post_id, "spam", GTUBE).status_code == 200
    [held_comment] = comments(server)
    assert held_comment["status"] == "pending"
    reason = held_comment["reason"]
    assert (
        reason.startswith("The spam filter asked for it to be held (spamassassin: SpamAssassin score ")
        and "GTUBE" in reason
    )
    assert "event=comment_filtered" in server.log() and "verdict=hold" in server.log()


@pytest.fixture
def filtered_blog(jitaku_factory: Any, rspamd_engine: Rspamd, spamd: Spamd) -> Jitaku:  # noqa: F811
    server: Jitaku = jitaku_factory()
    server.settings["filters"] = {
        "timeout": 10,
        "rspamd": {"url": rspamd_engine.url, "controller_url": rspamd_engine.controller_url},
        "spamassassin": {"address": f"{spamd.host}:{spamd.port}"},
    }
    server.write_config()
    server.init(OWNER)
    server.start()
    return server


def blog_post(server: Jitaku, tmp_path: Path) -> int:
    posts = tmp_path / "posts"
    posts.mkdir()
    (posts / "a.md").write_text(BLOG_POST)
    server.cli("blog", "import", str(posts))
    [found] = json.loads(server.cli("blog", "posts", "--json").stdout)
    return int(found["id"])


def reader(server: Jitaku) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{server.web_port}", timeout=30)


def comment(browser: httpx.Client, post_id: int, name: str, body: str) -> httpx.Response:
    """A reader's comment as a browser sends it: the post's page sets the form's token, which must be 2 s old."""
    assert browser.get("/2024/05/jitaku/").status_code == 200
    time.sleep(2.1)
    form = {"name": name, "email": f"{name}@remote.test", "url": "", "website": "", "body": body}
    return browser.post(f"/comments/{post_id}", data=form)


def test_a_gtube_comment_is_spam_and_a_plain_one_follows_moderation(filtered_blog: Jitaku, tmp_path: Path) -> None:
    server = filtered_blog
    post_id = blog_post(server, tmp_path)
    with reader(server) as browser:
        assert comment(browser, post_id, "spammer", f"Cheap pills {GTUBE}").status_code == 200
        assert comment(browser, post_id, "reader", "いい記事です。Thanks for the write-up!").status_code == 200
    by_author = {c["author"]: c for c in comments(server)}
    assert by_author["spammer"]["status"] == "spam"
    assert "The spam filter judged it spam (rspamd" in by_author["spammer"]["reason"]
    # moderation "first": a first comment waits, and the engines had nothing to say of it
    assert by_author["reader"]["status"] == "pending"
    assert by_author["reader"]["reason"] == 'First comment from this author (moderation "first").'
    assert server.log().count("event=comment_filtered") == 2


def test_a_comment_no_engine_could_check_follows_moderation_saying_so(jitaku_factory: Any, tmp_path: Path) -> None:
    server: Jitaku = jitaku_factory()
    server.settings["filters"] = {"timeout": 5, "spamassassin": {"address": f"127.0.0.1:{free_port()}"}}
    server.settings["blog"] = {"moderation": "none"}
    server.write_config()
    server.init(OWNER)
    server.start()
    post_id = blog_post(server, tmp_path)
    with reader(server) as browser:
        assert comment(browser, post_id, "reader", f"Not checked {GTUBE}").status_code == 303  # published: to the post
    [unchecked] = comments(server)
    assert unchecked["status"] == "published"
    assert unchecked["reason"] == "Spam filter: not checked (spamassassin unavailable)."
    assert "event=filter_failed" in server.log() and "spamassassin" in server.log()
