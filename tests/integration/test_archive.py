"""The lists' archives on the web, end to end: posts sent with swaks through the list, each member's copy read
from their mailbox (bob@example.org is a local user) or from smtp-sink, the pages read over HTTP as a browser
reads them, the mbox read back by Python's `mailbox`, and the pages drawn in headless Chromium with axe-core."""

from __future__ import annotations

import mailbox
import re
from email import message_from_bytes
from email.header import Header
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import formataddr
from pathlib import Path

import httpx
import pytest

from jitaku.store import Database
from tests.integration import test_lists
from tests.integration.browser import Chromium
from tests.integration.forms import csrf_of, submit
from tests.integration.harness import Jitaku
from tests.integration.test_lists import LIST, header, post, raw_header
from tests.peers import wait_until

list_server = test_lists.list_server  # the fixture: a running jitaku with list sota@example.test and its members

ARTIFACTS = Path(__file__).parent.parent.parent / "artifacts" / "screenshots"
WEB = "https://mail.example.test"  # the harness's [web] url


def jis(text: str) -> str:
    return Header(text, "iso-2022-jp").encode()


def japanese_post(path: Path) -> Path:
    """A post as an old Japanese mail program writes it: ISO-2022-JP encoded-words in From and Subject, the
    body ISO-2022-JP in 7 bits."""
    body = "来週の会議は自宅サーバーの前で。\r\n連絡は kenji@example.jp まで。\r\n"
    path.write_bytes(
        (
            f"From: {jis('山田花子')} <carol@members.test>\r\n"
            f"To: {LIST}\r\n"
            f"Subject: {jis('会議のお知らせ')}\r\n"
            "Message-ID: <kaigi-1@members.test>\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=ISO-2022-JP\r\n"
            "Content-Transfer-Encoding: 7bit\r\n"
            "\r\n"
        ).encode("ascii")
        + body.encode("iso2022_jp")
    )
    return path


def reply_post(path: Path) -> Path:
    path.write_bytes(
        (
            f"From: Dave <dave@members.test>\r\nTo: {LIST}\r\nSubject: Re: {jis('会議のお知らせ')}\r\n"
            "Message-ID: <kaigi-2@members.test>\r\nIn-Reply-To: <kaigi-1@members.test>\r\n"
            "References: <kaigi-1@members.test>\r\n\r\nI will be there.\r\n"
        ).encode("ascii")
    )
    return path


def local(url: str, server: Jitaku) -> str:
    """A URL the list wrote (on [web] url) as the test reaches it: the same path on the daemon's port."""
    assert url.startswith(WEB + "/"), url
    return f"http://127.0.0.1:{server.web_port}{url.removeprefix(WEB)}"


def archived_at(message: bytes) -> str:
    found = re.fullmatch(r"<([^>]+)>", raw_header(message, "Archived-At").strip())
    assert found is not None, raw_header(message, "Archived-At")
    return found.group(1)


@pytest.mark.both_databases
def test_a_japanese_post_reads_decoded_on_its_page_named_by_each_copy_and_a_reply_threads_under_it(
    list_server, tmp_path: Path
) -> None:
    server, members = list_server
    post(server, "carol@members.test", "", "--data", str(japanese_post(tmp_path / "post.eml")))
    wait_until(lambda: server.mailbox("bob@example.org"), timeout=20)
    copy = server.message("bob@example.org", 1)
    # RFC 2369 and RFC 5064: the archive and this post's page, HyperKitty's hash of the Message-ID in its URL
    assert raw_header(copy, "List-Archive").strip() == f"<{WEB}/lists/{LIST}/archive/>"
    url = archived_at(copy)
    assert re.fullmatch(rf"{re.escape(WEB)}/lists/{re.escape(LIST)}/archive/msg/[A-Z2-7]{{32}}/", url)
    (remote,) = wait_until(lambda: members.copies_for("dave@members.test"), timeout=20)
    assert archived_at(remote) == url  # every member's copy names the same page

    page = httpx.get(local(url, server))
    assert page.status_code == 200
    assert "会議のお知らせ" in page.text and "山田花子" in page.text
    assert "来週の会議は自宅サーバーの前で。" in page.text
    assert "kenji at example.jp" in page.text and "kenji@example.jp" not in page.text  # as Mailman shows it
    assert "carol@members.test" not in page.text

    months = httpx.get(local(f"{WEB}/lists/{LIST}/archive/", server))
    month = re.search(r'href="[^"]*/archive/([0-9]{4}-[0-9]{2})/"', months.text)
    assert months.status_code == 200 and month is not None, months.text
    month_url = local(f"{WEB}/lists/{LIST}/archive/{month.group(1)}/", server)

    post(server, "dave@members.test", "", "--data", str(reply_post(tmp_path / "reply.eml")))
    wait_until(lambda: len(server.mailbox("bob@example.org")) == 2, timeout=20)
    reply_url = archived_at(server.message("bob@example.org", 2))
    listing = httpx.get(month_url).text
    first = listing.index(url.removeprefix(WEB))
    second = listing.index(reply_url.removeprefix(WEB))
    # the reply sits in a list nested inside the first post's item
    assert first < second and "<ul>" in listing[first:second] and "</li>" not in listing[first:second], listing
    reply_page = httpx.get(local(reply_url, server)).text
    assert f'href="{url.removeprefix(WEB)}" rel="up"' in reply_page

    search = local(f"{WEB}/lists/{LIST}/archive/search", server)
    for word in ("自宅サーバー", "会議"):  # three characters and more through the trigram index, two by LIKE
        found = httpx.get(search, params={"q": word})
        assert found.status_code == 200 and f"<mark>{word}</mark>" in found.text, word
        assert f'href="{url.removeprefix(WEB)}"' in found.text, word
    assert "<mark>" not in httpx.get(search, params={"q": "停電"}).text
    snippet = httpx.get(search, params={"q": "kenji"}).text  # the index holds addresses as the pages show them
    assert "<mark>kenji</mark> at example.jp" in snippet and "@example.jp" not in snippet

    download = httpx.get(month_url.rstrip("/") + ".mbox")
    assert download.status_code == 200 and download.headers["content-type"].startswith("application/mbox")
    (tmp_path / "month.mbox").write_bytes(download.content)
    read = mailbox.mbox(str(tmp_path / "month.mbox"))
    assert [m["Message-ID"] for m in read] == ["<kaigi-1@members.test>", "<kaigi-2@members.test>"]
    assert read[0].get_payload(decode=True).decode("iso2022_jp").startswith("来週の会議")
    # every post has its page already: the command for posts archived before pages existed finds none
    assert f"{LIST}: 0 older posts" in server.cli("list", "reindex", LIST).stdout
    # posts archived before 0021 kept their Message-ID: the daemon gives them their pages when it starts
    server.stop()
    database = Database(server.database_url)
    with database.transaction() as connection:
        connection.exec_driver_sql(
            "UPDATE list_posts SET message_id = NULL, message_hash = NULL, parent_number = NULL, thread_number = NULL"
        )
        connection.exec_driver_sql("DELETE FROM search_list_posts")
    database.close()
    server.start()
    wait_until(lambda: httpx.get(local(url, server)).status_code == 200, timeout=20)
    assert f'href="{url.removeprefix(WEB)}" rel="up"' in httpx.get(local(reply_url, server)).text
    search = local(f"{WEB}/lists/{LIST}/archive/search", server)  # on the port of this start
    assert f'href="{url.removeprefix(WEB)}"' in httpx.get(search, params={"q": "会議"}).text
    for word in ("自宅サーバー", "会議"):  # the site's own search finds a public list's posts too
        found = httpx.get(local(f"{WEB}/search", server), params={"q": word}).text
        assert f'href="{url.removeprefix(WEB)}"' in found and f"<mark>{word}</mark>" in found, word


def rich_post(path: Path) -> tuple[Path, bytes, bytes]:
    """An HTML part with a script, a remote image and a style attribute, and two attachments that would run
    script if a browser showed them: an HTML page with a Japanese name and an SVG."""
    message = EmailMessage()
    message["From"] = formataddr(("Erin", "erin@other.test"))
    message["To"] = LIST
    message["Subject"] = "Slides"
    message["Message-ID"] = "<slides@other.test>"
    message.set_content("See the slides.")
    message.add_alternative(
        '<p>Hello <b>world</b></p><script>alert("owned")</script><img src="http://tracker.test/p.png">'
        '<p style="color: red">styled</p>',
        subtype="html",
    )
    page = b'<html><script>alert("page")</script></html>'
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert("svg")</script></svg>'
    message.add_attachment(page, maintype="text", subtype="html", filename="会議資料.html")
    message.add_attachment(svg, maintype="image", subtype="svg+xml", filename="logo.svg")
    html_only = EmailMessage()
    html_only.set_content('<p>Only <i>HTML</i></p><script>alert("inline")</script>', subtype="html")
    message.attach(html_only)
    path.write_bytes(message.as_bytes())
    return path, page, svg


def test_html_is_shown_sanitized_and_attachments_only_ever_download(list_server, tmp_path: Path) -> None:
    server, members = list_server
    data, page_bytes, svg_bytes = rich_post(tmp_path / "rich.eml")
    post(server, "erin@other.test", "", "--data", str(data))
    wait_until(lambda: server.mailbox("bob@example.org"), timeout=20)
    url = local(archived_at(server.message("bob@example.org", 1)), server)
    page = httpx.get(url)
    assert page.status_code == 200
    assert "See the slides." in page.text  # the plain text of the alternative
    assert "Only <i>HTML</i>" in page.text  # the HTML-only part, sanitized
    for unwanted in ("alert(", "<script", "tracker.test", 'style="color'):
        assert unwanted not in page.text, unwanted
    links = re.findall(r'href="([^"]*/attachments/[0-9]+)"', page.text)
    assert len(links) == 2 and "会議資料.html" in page.text and "logo.svg" in page.text
    base = f"http://127.0.0.1:{server.web_port}"
    downloads = [httpx.get(base + link) for link in links]
    for answer, body in zip(downloads, (page_bytes, svg_bytes), strict=True):
        assert answer.status_code == 200 and answer.content == body
        assert answer.headers["content-type"] == "application/octet-stream"
        assert answer.headers["content-disposition"].startswith("attachment;")
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["content-security-policy"].startswith("sandbox")
    # RFC 6266 filename* carries the Japanese name
    assert "filename*=UTF-8''%E4%BC%9A%E8%AD%B0%E8%B3%87%E6%96%99.html" in downloads[0].headers["content-disposition"]


def test_a_members_archive_lets_in_only_a_member_who_followed_the_mailed_link(list_server, tmp_path: Path) -> None:
    server, members = list_server
    said = server.cli("list", "set", LIST, "archive", "members").stdout
    assert "archive = members" in said
    post(server, "carol@members.test", "", "--data", str(japanese_post(tmp_path / "post.eml")))
    wait_until(lambda: server.mailbox("bob@example.org"), timeout=20)
    message_url = local(archived_at(server.message("bob@example.org", 1)), server)
    archive_url = local(f"{WEB}/lists/{LIST}/archive/", server)
    login_url = archive_url + "login"

    assert httpx.post(login_url, data={"address": "bob@example.org"}).status_code == 403  # no form of ours
    stranger = httpx.get(message_url)
    assert stranger.status_code == 403 and "Members only" in stranger.text and "会議" not in stranger.text
    with httpx.Client() as browser:
        asked = {}
        message_path = message_url.removeprefix(f"http://127.0.0.1:{server.web_port}")
        for address in ("bob@example.org", "nobody@other.test"):
            # asked on the page of the post the member came for, where the link will lead
            answer = submit(browser, message_url, {"address": address, "next": message_path}, action=login_url)
            assert answer.status_code == 200
            asked[address] = answer.text.replace(address, "ADDRESS")
        # the same page for a member and a stranger: it tells nobody who is on the list
        assert asked["bob@example.org"] == asked["nobody@other.test"]

    mail = wait_until(lambda: [m for m in server.mailbox("bob@example.org") if "archive" in m["subject"]], timeout=20)
    notice = message_from_bytes(server.message("bob@example.org", mail[0]["uid"]), policy=default_policy)
    text = notice.get_body().get_content()
    link = re.search(rf"{re.escape(WEB)}/lists/{re.escape(LIST)}/archive/login/[A-Za-z0-9_-]+\?next=\S+", text)
    assert link is not None, text
    with httpx.Client() as member:
        shown = member.get(local(link.group(0), server))  # a mail scanner's GET logs nobody in
        assert shown.status_code == 200 and "Log in as bob@example.org" in shown.text
        assert member.get(message_url).status_code == 403
        logged_in = member.post(local(link.group(0), server), data={"csrf": csrf_of(shown.text)})
        assert logged_in.status_code == 303 and logged_in.headers["location"] == message_path
        page = member.get(message_url)
        assert page.status_code == 200 and "会議のお知らせ" in page.text
        assert "kenji@example.jp" in page.text  # members see addresses as they were written
        again = member.post(local(link.group(0), server), data={"csrf": csrf_of(shown.text)})
        assert again.status_code == 404  # used once
        # the cookie names this list under its signature: renamed for another list it opens nothing there
        server.cli("list", "create", "other@example.test", "--name", "Other", "--owner", "alice@example.test")
        server.cli("list", "add", "other@example.test", "bob@example.org")
        server.cli("list", "set", "other@example.test", "archive", "members")
        (name, value), *_ = [(n, v) for n, v in member.cookies.items() if n.startswith("jitaku_archive_")]
        other_id = int(name.rsplit("_", 1)[1]) + 1
        forged = {f"jitaku_archive_{other_id}": value}
        other = httpx.get(f"http://127.0.0.1:{server.web_port}/lists/other@example.test/archive/", cookies=forged)
        assert other.status_code == 403
        # logging out drops the cookie: the page asks for the address again
        page = member.get(message_url)
        assert "Logged in as bob@example.org" in page.text
        out = member.post(archive_url + "logout", data={"csrf": csrf_of(page.text)})
        assert out.status_code == 303 and member.get(message_url).status_code == 403


def test_a_list_without_archive_names_none_and_answers_404(list_server, tmp_path: Path) -> None:
    server, members = list_server
    server.cli("list", "set", LIST, "archive", "none")
    post(server, "carol@members.test", "", "--data", str(japanese_post(tmp_path / "post.eml")))
    (copy,) = wait_until(lambda: members.copies_for("dave@members.test"), timeout=20)
    assert header(copy, "List-Archive") == "" and header(copy, "Archived-At") == ""
    assert header(copy, "List-Id")  # the list's other fields are there
    base = f"http://127.0.0.1:{server.web_port}/lists/{LIST}/archive/"
    for path in ("", "login", "2026-12/", "msg/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/"):
        assert httpx.get(base + path).status_code == 404, path


@pytest.mark.parametrize("size,width,mobile", [("phone", 375, True), ("desktop", 1280, False)])
def test_months_month_and_message_pages_read_well_with_no_serious_accessibility_finding(
    list_server, tmp_path: Path, size: str, width: int, mobile: bool
) -> None:
    server, _members = list_server
    post(server, "carol@members.test", "", "--data", str(japanese_post(tmp_path / "post.eml")))
    wait_until(lambda: server.mailbox("bob@example.org"), timeout=20)
    post(server, "dave@members.test", "", "--data", str(reply_post(tmp_path / "reply.eml")))
    wait_until(lambda: len(server.mailbox("bob@example.org")) == 2, timeout=20)
    message_url = local(archived_at(server.message("bob@example.org", 1)), server)
    months = httpx.get(local(f"{WEB}/lists/{LIST}/archive/", server)).text
    month = re.search(r'href="([^"]*/archive/[0-9]{4}-[0-9]{2}/)"', months)
    assert month is not None
    pages = {
        "months": local(f"{WEB}/lists/{LIST}/archive/", server),
        "month": f"http://127.0.0.1:{server.web_port}{month.group(1)}",
        "message": message_url,
    }
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with Chromium() as browser:
        for name, url in pages.items():
            shot = ARTIFACTS / f"archive-{name}-{size}.png"
            shot.unlink(missing_ok=True)
            browser.open(url, width, mobile=mobile)
            layout = browser.evaluate("({scroll: document.documentElement.scrollWidth, text: document.body.innerText})")
            browser.screenshot(shot)
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert layout["scroll"] == width, name
            assert ("会議のお知らせ" if name != "months" else month.group(1)[-8:-1]) in layout["text"], name
            found = [v for v in browser.accessibility_violations() if v["impact"] in ("serious", "critical")]
            assert found == [], (name, found)
