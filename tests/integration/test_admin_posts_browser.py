"""The owner writes a post in the admin as a person does, in headless Chromium on this machine (loopback is let in):
a Japanese title and tags typed, the post previewed, saved, and read on the site; an image uploaded and served at
/media/...; the list and the editor at a phone's and a desktop's width (screenshots in artifacts/screenshots/),
laid out within the screen and with no serious or critical finding of axe-core."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.integration.browser import Chromium
from tests.integration.forms import csrf_of
from tests.integration.harness import Jitaku
from tests.integration.test_site_browser import ARTIFACTS, LAYOUT, SIZES, png

TITLE = "自宅サーバーの引っ越し"
BODY = "押し入れから**物置**へ、サーバーを移しました。\n\n- UPS も一緒に\n- 配線を整理"


@pytest.fixture
def web(jitaku_factory) -> Jitaku:
    server: Jitaku = jitaku_factory()
    server.settings["blog"] = {"timezone": "Asia/Tokyo"}
    server.write_config()
    server.init("alice@example.test")
    server.start()
    return server


def base(server: Jitaku) -> str:
    return f"http://127.0.0.1:{server.web_port}"


def check_page(browser: Chromium, name: str, size: str, width: int) -> dict[str, object]:
    """The page now open: a screenshot kept, laid out within WIDTH, and no serious or critical axe finding."""
    shot = ARTIFACTS / f"admin-{name}-{size}.png"
    shot.unlink(missing_ok=True)
    page = dict(browser.evaluate(LAYOUT))
    browser.screenshot(shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5_000
    assert (page["scrollWidth"], page["past"]) == (width, []), (name, size)
    found = [v for v in browser.accessibility_violations() if v["impact"] in ("serious", "critical")]
    assert found == [], (name, size, found)
    return page


def test_the_owner_writes_previews_saves_and_illustrates_a_post_that_then_shows_on_the_site(
    web: Jitaku, tmp_path: Path
) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    photo = tmp_path / "物置.png"
    photo.write_bytes(png(120, 80))
    with Chromium() as browser:
        browser.open(base(web) + "/admin/posts/new", 1280)
        browser.type_into("#title", TITLE)
        browser.type_into("#tags", "自宅サーバー, 引っ越し")
        browser.type_into("#body", BODY)
        browser.click("input[name=state][value=published]", loads=False)
        browser.click("button[value=preview]")
        text = browser.evaluate("document.body.innerText")
        assert "Preview" in text and "物置" in browser.evaluate("document.querySelector('.preview strong').textContent")
        assert browser.evaluate("document.querySelector('#title').value") == TITLE  # the form kept
        assert json.loads(web.cli("blog", "posts", "--json").stdout) == []  # a preview saves nothing

        browser.choose_file("#image", photo)
        browser.click("button[value=upload]")
        pasted = browser.evaluate("document.querySelector('code.paste').textContent")
        media = pasted.removeprefix("![](").removesuffix(")")
        assert media.startswith("/media/uploads/") and media.endswith(quote("物置") + ".png"), pasted
        assert browser.evaluate("document.querySelector('#body').value").startswith("押し入れから")  # nothing lost
        browser.evaluate(
            "(b => { b.focus(); b.setSelectionRange(b.value.length, b.value.length) })(document.querySelector('#body'))"
        )
        browser.call("Input.insertText", text=f"\n\n![物置のラック]({media})\n")  # pasted at the end of the text

        browser.click("button[value=save]")
        assert "Saved." in browser.evaluate("document.body.innerText")
        edited = browser.evaluate("location.pathname")
        [post] = json.loads(web.cli("blog", "posts", "--json").stdout)
        assert (post["title"], post["tags"], post["draft"]) == (TITLE, ["自宅サーバー", "引っ越し"], False)
        assert post["url"].endswith(f"/{TITLE}/")

        browser.open(base(web) + quote(post["url"]), 1280)
        shown = browser.evaluate(LAYOUT)
        assert TITLE in shown["text"] and "UPS も一緒に" in shown["text"]
        assert shown["images"] and all(image["loaded"] for image in shown["images"])  # the upload, from /media/
        browser.open(base(web) + "/", 1280)
        assert TITLE in browser.evaluate("document.body.innerText")
        served = httpx.get(base(web) + media)
        assert served.status_code == 200 and served.headers["content-type"] == "image/png"
        assert served.content == photo.read_bytes()

        browser.open(base(web) + "/admin/posts/new?kind=page", 1280)  # a draft page, for the list to show both
        browser.type_into("#title", "このサイトについて")
        browser.click("button[value=save]")
        assert "Saved." in browser.evaluate("document.body.innerText")

        for size, width, mobile in SIZES:
            browser.open(base(web) + "/admin/posts", width, mobile=mobile)
            listing = check_page(browser, "posts", size, width)
            assert TITLE in str(listing["text"]) and "このサイトについて" in str(listing["text"])
            assert "published" in str(listing["text"]) and "draft" in str(listing["text"])
            browser.open(base(web) + edited, width, mobile=mobile)
            browser.click("button[value=preview]")  # the editor with its preview below
            check_page(browser, "post-editor", size, width)


def test_the_daemon_takes_a_long_post_from_the_editor_and_refuses_one_without_the_pages_csrf_field(
    web: Jitaku,
) -> None:
    """Through the daemon's own app (web/status.py): the editor's bound is its own, not `[web] max_body_size`'s 64
    KiB, and its CSRF check is made though the generic one is skipped for it."""
    long = "押し入れのサーバーの話。" * 8000  # 288 KB of UTF-8
    fields = {"title": "長い記事", "slug": "long", "tags": "", "date": "", "state": "published", "kind": "post"}
    with httpx.Client(base_url=base(web)) as client:
        page = client.get("/admin/posts/new")
        forged = client.post(
            "/admin/posts/new", data={**fields, "body": long, "action": "save"}, files={"image": ("", b"")}
        )
        assert forged.status_code == 403 and "Form refused" in forged.text
        assert json.loads(web.cli("blog", "posts", "--json").stdout) == []
        field = csrf_of(page.text)
        saved = client.post(
            "/admin/posts/new",
            data={**fields, "body": long, "action": "save", "csrf": field},
            files={"image": ("", b"")},
            follow_redirects=False,
        )
        assert saved.status_code == 303, saved.text[:500]
        [post] = json.loads(web.cli("blog", "posts", "--json").stdout)
        assert f"<p>{long}</p>" in client.get(post["url"]).text
