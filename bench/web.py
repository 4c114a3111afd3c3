#!/usr/bin/env python3
"""The blog's pages under load: jitaku's web server against nginx serving the same bytes as static files, same
run, same machine (issue 21).

Why: a home server is first of all a blog, and nginx serving files from the page cache is the well-known
ceiling for a page. The floor the issue sets: a post page at >= 0.2x nginx's requests per second with p99
under 100 ms at 50 connections (aim: 0.3x).

How: a `jitaku serve` from a fresh `jitaku init` in a temp dir, the web on a free port and every other listener
off (a bench must not collide with a jitaku running on the defaults), the health monitor off, runs this
checkout's code (PYTHONPATH=src). A generated blog of --posts posts (Japanese text, one tag, a few paragraphs
and a list each) goes in with `jitaku blog import`. The home page and a post page are fetched from jitaku with
`Accept-Encoding: gzip`, and their bytes written as static files for nginx (a throwaway config in the temp dir:
`daemon off`, a free port, `worker_processes auto`, access_log off). Same gzip setting: if jitaku answered
gzip, nginx serves the same compressed bytes (`gzip_static`), else none; neither compresses per request.
Then `wrk -t2 -c50 -d20s --latency -H 'Accept-Encoding: gzip'` on each page, alternating jitaku and nginx for
--rounds rounds; the best round of each is reported (the machine is shared and noisy): requests/s, p99, and
the ratio jitaku/nginx. The status page at /admin/ is measured as well, for reference.

Also: durable comment POSTs per second, and the p50 and p99 of one POST: a form fetched per comment (its
signed token may be used once), each from its own loopback address (127.0.N.M, so the per-address rate limit
counts each reader once), the form's minimum time to submit waited out before the clock starts, then
--comments POSTs from --comment-clients threads; a comment counts when the daemon answered 2xx/3xx, and
`jitaku blog comments --json` must list every one afterwards (saved means committed). And the daemon's resident memory: idle before the load, after it, and the idle RSS of the
config `jitaku init` writes (the < 80 MB contract, tests/integration/test_memory.py).

Needs: wrk and nginx (Debian packages; installed with apt-get when missing, so run it as root), httpx and
psutil. Not part of the test suite (scripts/test): a bench takes minutes and wants a quiet machine.

Usage: bench/web [--seconds 20] [--rounds 2] [--connections 50] [--threads 2] [--posts 20]
                 [--comments 1000] [--comment-clients 10] [--keep]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

import smtp_accept  # noqa: E402
from smtp_accept import default_idle_rss, free_port, rss_mb, set_toml_keys  # noqa: E402

LOOPBACK = "127.0.0.1"
JITAKU = [sys.executable, "-m", "jitaku"]
os.environ["PYTHONPATH"] = str(ROOT / "src")  # this checkout's code, not an installed jitaku
smtp_accept.JITAKU_COMMAND[:] = JITAKU  # for default_idle_rss
TAG = "自宅サーバー"
FLOOR_RATIO, AIM_RATIO, FLOOR_P99_MS = 0.2, 0.3, 100.0
MIN_TIME_TO_SUBMIT = 3.1  # the comment form's minimum time to submit is at most 3 s (CONTRACTS.md)


def say(text: str) -> None:
    print(text, flush=True)


def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result


def ensure_tools() -> None:
    """wrk and nginx from Debian, when missing."""
    missing = [package for package, binary in (("wrk", "wrk"), ("nginx", "nginx")) if not _which(binary)]
    if not missing:
        return
    if os.geteuid() != 0:
        raise SystemExit(f"bench/web needs {' and '.join(missing)}: apt-get install {' '.join(missing)} (as root)")
    say(f"installing {' '.join(missing)} (apt-get)")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        check=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )


def _which(binary: str) -> str | None:
    return shutil.which(binary, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


# ---------------------------------------------------------------- the blog and the daemon

PARAGRAPHS = (
    "自宅のサーバーでメールとブログを動かしている。停電のあとも、ちゃんと戻ってきた。",
    "バックアップは毎晩とっている。復元の手順も、年に一度は実際に試すことにしている。",
    "今日はディスクを入れ替えた。SMARTの値が少しずつ悪くなっていたので、早めに交換した。",
    "読者の方からコメントをいただいた。ありがとうございます。次の記事で詳しく書きます。",
)


def write_blog(directory: Path, posts: int) -> None:
    """POSTS Markdown posts, one a day back from today, each tagged TAG, of a few paragraphs and a list."""
    directory.mkdir(parents=True)
    today = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0)
    for number in range(1, posts + 1):
        day = today - timedelta(days=posts - number)
        body = "\n\n".join(PARAGRAPHS[(number + k) % len(PARAGRAPHS)] * 3 for k in range(4))
        steps = "\n".join(f"- 手順{k}: 設定を確認する (`jitaku check`)" for k in range(1, 6))
        (directory / f"post-{number:02d}.md").write_text(
            f"---\ntitle: 自宅サーバー日記 その{number}\ndate: {day:%Y-%m-%d %H:%M}\ntags: [{TAG}]\n"
            f"slug: diary-{number:02d}\n---\n{body}\n\n## 今日の作業\n\n{steps}\n"
        )


def start_jitaku(data: Path, blog: Path) -> tuple[subprocess.Popen[bytes], int]:
    """`jitaku serve` in DATA with the blog in BLOG imported; returns it once its web port answers."""
    run([*JITAKU, "init", "--domain", "example.test", "--dir", str(data)], timeout=600)
    port = free_port()
    off = {"listen": "[]"}
    listeners = {name: off for name in ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s")}
    config = data / "jitaku.toml"
    changes = {**listeners, "web": {"listen": f'["{LOOPBACK}:{port}"]'}, "health": {"enabled": "false"}}
    config.write_text(set_toml_keys(config.read_text(), changes))
    run([*JITAKU, "blog", "import", str(blog), "--dir", str(data)], timeout=600)
    log = open(data / "serve.log", "ab")  # the daemon's, for as long as it runs
    process = subprocess.Popen([*JITAKU, "serve", "--dir", str(data)], stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"http://{LOOPBACK}:{port}/api/health", timeout=2)
            return process, port
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"jitaku serve did not start; see {data / 'serve.log'}") from None
            time.sleep(0.1)


def idle_rss(pid: int, timeout: float = 30.0) -> float:
    """PID's resident MiB once it stops growing."""
    time.sleep(1.0)
    deadline = time.monotonic() + timeout
    last, _ = rss_mb(pid)
    while True:
        time.sleep(1.0)
        now, _ = rss_mb(pid)
        if now - last < 0.25 or time.monotonic() > deadline:
            return now
        last = now


# ---------------------------------------------------------------- nginx, with jitaku's bytes


@dataclass
class Page:
    name: str
    path: str  # as requested (percent-encoded)
    body: bytes  # decoded
    sent: bytes  # what jitaku sent (gzip-compressed if it said so)
    gzipped: bool


def fetch(port: int, name: str, path: str) -> Page:
    """PATH as jitaku serves it with Accept-Encoding: gzip, following redirects; the bench stops if not 200."""
    with httpx.Client(base_url=f"http://{LOOPBACK}:{port}", follow_redirects=True, timeout=30) as client:
        with client.stream("GET", path, headers={"accept-encoding": "gzip"}) as answer:
            sent = b"".join(answer.iter_raw())
            if answer.status_code != 200:
                raise SystemExit(f"{name} page {path}: jitaku answers {answer.status_code}")
            gzipped = answer.headers.get("content-encoding", "") == "gzip"
            final = answer.url.raw_path.decode().split("?")[0]
    return Page(name, final, gzip.decompress(sent) if gzipped else sent, sent, gzipped)


NGINX_CONF = """\
daemon off;
worker_processes auto;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    default_type text/html;
    charset utf-8;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {work}/tmp/body;
    proxy_temp_path {work}/tmp/proxy;
    fastcgi_temp_path {work}/tmp/fastcgi;
    uwsgi_temp_path {work}/tmp/uwsgi;
    scgi_temp_path {work}/tmp/scgi;
    server {{
        listen {address}:{port};
        root {work}/www;
        gzip off;
        gzip_static {gzip_static};
        location / {{ try_files $uri $uri/index.html =404; }}
    }}
}}
"""


def start_nginx(work: Path, pages: list[Page]) -> tuple[subprocess.Popen[bytes], int]:
    """nginx serving PAGES' bytes at their paths (PATH/index.html, and its .gz if jitaku sent gzip)."""
    www = work / "www"
    for page in pages:
        file = www / unquote(page.path).lstrip("/") / "index.html"
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(page.body)
        if page.gzipped:
            Path(f"{file}.gz").write_bytes(page.sent)
    (work / "tmp").mkdir(exist_ok=True)
    port = free_port()
    gzip_static = "on" if any(page.gzipped for page in pages) else "off"
    conf = work / "nginx.conf"
    conf.write_text(NGINX_CONF.format(work=work, address=LOOPBACK, port=port, gzip_static=gzip_static))
    process = subprocess.Popen(
        [_which("nginx") or "nginx", "-p", str(work), "-c", str(conf), "-e", str(work / "nginx-error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"http://{LOOPBACK}:{port}/", timeout=2)
            break
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                error = process.stderr.read().decode() if process.stderr else ""
                raise RuntimeError(f"nginx did not start: {error}") from None
            time.sleep(0.05)
    for page in pages:  # the same bytes, or the comparison means nothing
        answer = httpx.get(f"http://{LOOPBACK}:{port}{page.path}", headers={"accept-encoding": "gzip"})
        if answer.status_code != 200 or answer.content != page.body:
            raise RuntimeError(f"nginx does not serve jitaku's {page.name} page at {page.path}: {answer.status_code}")
    return process, port


# ---------------------------------------------------------------- wrk


@dataclass
class Round:
    requests_per_second: float
    p99_ms: float
    errors: str  # wrk's socket errors and non-2xx count, "" if none


UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def wrk(port: int, path: str, args: argparse.Namespace) -> Round:
    command = [
        _which("wrk") or "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{args.seconds:g}s",
        "--latency",
        "-H",
        "Accept-Encoding: gzip",
        f"http://{LOOPBACK}:{port}{path}",
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p99 = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M)
    if rate is None or p99 is None:
        raise RuntimeError(f"cannot read wrk's output:\n{output}")
    errors = [line.strip() for line in output.splitlines() if "Socket errors" in line or "Non-2xx" in line]
    return Round(float(rate.group(1)), float(p99.group(1)) * UNITS_MS[p99.group(2)], "; ".join(errors))


# ---------------------------------------------------------------- comments


class Forms(HTMLParser):
    """Every form of a page: its action and its fields (name -> (input type or "textarea", value))."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, tuple[str, str]]]] = []
        self._open = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {key: value or "" for key, value in attrs}
        if tag == "form":
            self.forms.append((found.get("action", ""), {}))
            self._open = True
        elif self._open and tag in ("input", "textarea") and found.get("name"):
            kind = "textarea" if tag == "textarea" else found.get("type", "text").lower()
            self.forms[-1][1][found["name"]] = (kind, found.get("value", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._open = False


def comment_form(page_html: str, page_url: str) -> tuple[str, dict[str, tuple[str, str]]] | None:
    parser = Forms()
    parser.feed(page_html)
    for action, fields in parser.forms:
        target = urljoin(page_url, action)
        if urlsplit(target).path.startswith("/comments/"):
            return target, fields
    return None


def filled(fields: dict[str, tuple[str, str]], number: int) -> dict[str, str]:
    """A reader's comment: the hidden fields as served, name, email and text filled, anything else (the
    honeypot among them) left as served."""
    data: dict[str, str] = {}
    for name, (kind, value) in fields.items():
        key = name.lower()
        if kind == "textarea":
            data[name] = f"読者{number}です。記事をありがとうございました。うちでも同じ構成で動かしています。"
        elif kind == "email" or "mail" in key:
            data[name] = f"reader{number}@example.test"
        elif key in ("name", "author") or key.endswith("name"):
            data[name] = f"読者{number}"
        else:
            data[name] = value
    return data


def source_address(number: int) -> str:
    """A loopback address of its own for the NUMBERth reader (127.0.1.1 up)."""
    return f"127.0.{1 + number // 250}.{1 + number % 250}"


def measure_comments(port: int, post_path: str, data: Path, args: argparse.Namespace) -> None:
    base = f"http://{LOOPBACK}:{port}"
    clients = [
        httpx.Client(base_url=base, transport=httpx.HTTPTransport(local_address=source_address(n)), timeout=60)
        for n in range(args.comments)
    ]
    try:
        forms = []
        for client in clients:
            page = client.get(post_path, follow_redirects=True)
            form = comment_form(page.text, str(page.url))
            if form is None:
                raise SystemExit(f"comments: the post page {post_path} has no comment form")
            forms.append(form)
        time.sleep(MIN_TIME_TO_SUBMIT)  # since the last form was served

        def send(number: int) -> tuple[int, float]:
            """The answer's status, and the seconds it took."""
            action, fields = forms[number]
            began = time.perf_counter()
            status = clients[number].post(action, data=filled(fields, number)).status_code
            return status, time.perf_counter() - began

        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.comment_clients) as pool:
            answers = list(pool.map(send, range(args.comments)))
        elapsed = time.perf_counter() - started
    finally:
        for client in clients:
            client.close()
    statuses = [status for status, _ in answers]
    latencies = sorted(seconds * 1000 for _, seconds in answers)
    p50, p99 = latencies[len(latencies) // 2], latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    accepted = sum(1 for status in statuses if 200 <= status < 400)
    refused = sorted({status for status in statuses if not 200 <= status < 400})
    say(
        f"comments: {accepted}/{args.comments} accepted in {elapsed:.2f} s with {args.comment_clients} clients:"
        f" {accepted / elapsed:.0f} durable comment POSTs/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms per POST"
        + (f" (refused: {refused})" if refused else "")
    )
    listed = subprocess.run([*JITAKU, "blog", "comments", "--json", "--dir", str(data)], capture_output=True, text=True)
    if listed.returncode != 0:
        say(f"comments: `jitaku blog comments --json` failed, not checked: {listed.stderr.strip()[:200]}")
    elif len(json.loads(listed.stdout)) < accepted:
        say(f"comments: LOST: {accepted} accepted, {len(json.loads(listed.stdout))} stored")
    else:
        say(f"comments: all {accepted} accepted are stored")


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="of each wrk run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2, help="wrk's")
    parser.add_argument("--posts", type=int, default=20)
    parser.add_argument("--comments", type=int, default=1000)
    parser.add_argument("--comment-clients", type=int, default=10)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (jitaku's data, nginx's files)")
    args = parser.parse_args()
    ensure_tools()

    work = Path(tempfile.mkdtemp(prefix="jitaku-bench-web-"))
    work.chmod(0o755)  # nginx's workers (nobody) read its files
    processes: list[subprocess.Popen[bytes]] = []
    try:
        write_blog(work / "blog", args.posts)
        jitaku, jitaku_port = start_jitaku(work / "jitaku", work / "blog")
        processes.append(jitaku)
        say(f"jitaku serve pid {jitaku.pid}, web on port {jitaku_port}; {args.posts} posts imported")
        posts = json.loads(run([*JITAKU, "blog", "posts", "--json", "--dir", str(work / "jitaku")]).stdout)
        post_url = posts[len(posts) // 2]["url"]
        wanted = [("post", post_url), ("home", "/"), ("status", "/admin/")]
        pages = [fetch(jitaku_port, name, path) for name, path in wanted]
        for page in pages:
            encoding = f"gzip, {len(page.sent)} bytes sent" if page.gzipped else "not compressed"
            say(f"{page.name} page {unquote(page.path)}: {len(page.body)} bytes, {encoding}")
        idle = idle_rss(jitaku.pid)
        nginx, nginx_port = start_nginx(work, pages)
        processes.append(nginx)
        say(f"nginx pid {nginx.pid} on port {nginx_port}, same bytes (gzip_static: {pages[0].gzipped})")

        servers = {"jitaku": jitaku_port, "nginx": nginx_port}
        results: dict[tuple[str, str], list[Round]] = {}
        for number in range(args.rounds):
            order = list(servers) if number % 2 == 0 else list(reversed(servers))
            for page in pages:
                for name in order:
                    measured = wrk(servers[name], page.path, args)
                    results.setdefault((page.name, name), []).append(measured)
                    note = f" ({measured.errors})" if measured.errors else ""
                    say(
                        f"round {number + 1} {page.name:6} {name:6}: {measured.requests_per_second:9.0f} req/s,"
                        f" p99 {measured.p99_ms:7.1f} ms{note}"
                    )
        after, peak = rss_mb(jitaku.pid)

        say(f"\nbest of {args.rounds} rounds, wrk -t{args.threads} -c{args.connections} -d{args.seconds:g}s:")
        for page in pages:
            best = {name: max(results[(page.name, name)], key=lambda r: r.requests_per_second) for name in servers}
            ratio = best["jitaku"].requests_per_second / best["nginx"].requests_per_second
            verdict = ""
            if page.name == "post":
                meets = ratio >= FLOOR_RATIO and best["jitaku"].p99_ms < FLOOR_P99_MS
                verdict = f"  floor (>= {FLOOR_RATIO}x, p99 < {FLOOR_P99_MS:.0f} ms): {'met' if meets else 'NOT met'}"
                verdict += f"; aim {AIM_RATIO}x: {'met' if ratio >= AIM_RATIO else 'not yet'}"
            say(
                f"{page.name:6}: jitaku {best['jitaku'].requests_per_second:8.0f} req/s p99"
                f" {best['jitaku'].p99_ms:6.1f} ms | nginx {best['nginx'].requests_per_second:8.0f} req/s p99"
                f" {best['nginx'].p99_ms:6.1f} ms | ratio {ratio:.2f}x{verdict}"
            )

        measure_comments(jitaku_port, pages[0].path, work / "jitaku", args)
        say(
            f"\njitaku serve (this bench's config) RSS: idle {idle:.1f} MiB, after the load {after:.1f} MiB (peak {peak:.1f})"
        )
        say(f"jitaku serve, the config `jitaku init` writes: idle RSS {default_idle_rss(work):.1f} MiB (limit 80)")
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
