"""The blog as a reader meets it, in headless Chromium (the comment written on a phone with JavaScript off is
in test_comments.py): an old URL that lands on the post after a slug change; the home page, a post and a tag archive at a phone's and a desktop's width (screenshots in
artifacts/screenshots/), laid out within the screen and with no serious or critical finding of axe-core."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.integration.browser import Chromium
from tests.integration.harness import Jitaku

ARTIFACTS = Path(__file__).parent.parent.parent / "artifacts" / "screenshots"
TAG = "自宅サーバー"
SIZES = (("phone", 375, True), ("desktop", 1280, False))

POST = """---
title: 自宅サーバーの十年
date: 2026-05-03 21:15
tags: [自宅サーバー, メール]
slug: ten-years
---
2002年から押し入れでメールとウェブのサーバーを動かしています。停電のあとに DDNS が古い IP のまま止まっていたこと、
RAID1 のディスクが二か月も壊れかけていたこと、どれも外から知らせてくれる仕組みがなかったのが原因でした。

![押し入れのサーバー](server.png)

This paragraph is in English, so that a long line of Latin text wraps too: {words}
"""

OLDER = """---
title: 停電のあとで
date: 2026-04-10 08:00
tags: [自宅サーバー]
---
停電から戻ると、DDNS の更新が古い PID ロックのまま止まっていた。
"""

ABOUT = """---
title: このサイトについて
date: 2026-01-01
slug: about
---
押し入れの自宅サーバーから配信しています。
"""


def png(width: int, height: int) -> bytes:
    """A grey PNG: a photo wider than any phone, which the layout must scale down."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + b"\x80\x80\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def write_blog(directory: Path, slug: str = "ten-years") -> None:
    (directory / "2026").mkdir(parents=True, exist_ok=True)
    (directory / "pages").mkdir(exist_ok=True)
    text = POST.format(words=" ".join(["homeserver"] * 60)).replace("slug: ten-years", f"slug: {slug}")
    (directory / "2026" / "ten-years.md").write_text(text, encoding="utf-8")
    (directory / "2026" / "server.png").write_bytes(png(1600, 900))
    (directory / "2026" / "blackout.md").write_text(OLDER, encoding="utf-8")
    (directory / "pages" / "about.md").write_text(ABOUT, encoding="utf-8")


@pytest.fixture
def blog(jitaku_factory, tmp_path: Path) -> Jitaku:
    """A running jitaku with admin alice and a blog of two posts and an About page."""
    server: Jitaku = jitaku_factory()
    server.settings["blog"] = {"timezone": "Asia/Tokyo"}
    server.write_config()
    server.init("alice@example.test")
    write_blog(tmp_path / "blog")
    server.cli("blog", "import", str(tmp_path / "blog"))
    server.start()
    return server


def base(server: Jitaku) -> str:
    return f"http://127.0.0.1:{server.web_port}"


def post_url(server: Jitaku, title: str) -> str:
    posts = json.loads(server.cli("blog", "posts", "--json").stdout)
    return str(next(post["url"] for post in posts if post["title"] == title))


LAYOUT = """(() => {
  const width = document.documentElement.clientWidth;
  const past = [...document.body.querySelectorAll("*")]
    .filter(element => element.getBoundingClientRect().right > width + 0.5)
    .map(element => element.outerHTML.slice(0, 100));
  const images = [...document.images].map(image => ({width: image.getBoundingClientRect().width,
    loaded: image.complete && image.naturalWidth > 0}));
  return {past, images, scrollWidth: document.documentElement.scrollWidth, lang: document.documentElement.lang,
    text: document.body.innerText};
})()"""


def test_an_old_url_lands_on_the_post_after_its_slug_changed(blog: Jitaku, tmp_path: Path) -> None:
    old = post_url(blog, "自宅サーバーの十年")
    write_blog(tmp_path / "blog", slug="jitaku-ten-years")
    blog.cli("blog", "import", str(tmp_path / "blog"))
    new = post_url(blog, "自宅サーバーの十年")
    assert new != old
    with Chromium() as browser:
        browser.open(base(blog) + quote(old), 1280)
        landed = browser.evaluate("({href: location.href, title: document.title})")
    assert landed["href"] == base(blog) + quote(new)
    assert "自宅サーバーの十年" in landed["title"]


def test_home_post_and_tag_archive_read_well_on_a_phone_and_a_desktop_with_no_serious_accessibility_finding(
    blog: Jitaku,
) -> None:
    pages = {
        "home": "/",
        "post": quote(post_url(blog, "自宅サーバーの十年")),
        "tag": f"/tags/{quote(TAG)}/",
    }
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with Chromium() as browser:
        for name, path in pages.items():
            for size, width, mobile in SIZES:
                shot = ARTIFACTS / f"site-{name}-{size}.png"
                shot.unlink(missing_ok=True)
                browser.open(base(blog) + path, width, mobile=mobile)
                page = browser.evaluate(LAYOUT)
                browser.screenshot(shot)
                assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
                assert page["lang"] == "ja"
                assert (page["scrollWidth"], page["past"]) == (width, []), (name, size)
                assert all(image["loaded"] and image["width"] <= width for image in page["images"]), (name, size)
                found = [v for v in browser.accessibility_violations() if v["impact"] in ("serious", "critical")]
                assert found == [], (name, size, found)
                if name != "post":
                    assert "自宅サーバーの十年" in page["text"] and "停電のあとで" in page["text"], (name, size)
