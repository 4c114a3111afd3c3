"""A standby has the primary's secret files (jitaku.ha.secret_files): after `jitaku standby setup` its DKIM keys,
TLS certificate and key and web cookie key are the primary's, byte for byte; a key the primary makes later
reaches it while both daemons run; and mail signed with its copy passes DKIM against the record the primary
published, as mail it sends after a failover must."""

from __future__ import annotations

import json
import os
import ssl
from pathlib import Path
from typing import Any

import dkim as dkimpy
import httpx
import pytest

from jitaku.ha.secret_files import PERIOD
from jitaku.mail import dkim
from jitaku.web.auth import SESSION_COOKIE
from tests.integration.forms import csrf_of
from tests.integration.harness import READER, Jitaku
from tests.integration.test_ha_daemon import _query, _standby_pair, started
from tests.integration.test_standby import no_cluster_left, pair  # noqa: F401  (a fixture, used by name)
from tests.peers import wait_until

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="runs PostgreSQL as another user: needs root (CI is)"),
    pytest.mark.usefixtures("no_cluster_left"),
]

MESSAGE = (
    b"From: alice@example.test\r\nTo: bob@remote.test\r\nSubject: after a failover\r\n"
    b"Message-ID: <failover@example.test>\r\nDate: Mon, 07 Dec 2026 10:00:00 +0000\r\n\r\nSigned by the standby.\r\n"
)


def secret_files(server: Jitaku) -> dict[str, tuple[bytes, int]]:
    """DKIM keys, TLS pair and web key: each file's bytes and mode."""
    paths = [*sorted((server.dir / "dkim").glob("*.key")), server.dir / "tls/cert.pem", server.dir / "tls/key.pem"]
    paths.append(server.dir / "web.secret")
    return {str(path.relative_to(server.dir)): (path.read_bytes(), path.stat().st_mode & 0o777) for path in paths}


def published_dns(server: Jitaku) -> Any:
    """A dnsfunc for dkimpy answering the TXT records SERVER says to publish (`jitaku dkim show`)."""
    records = {r["name"]: r["value"] for r in json.loads(server.cli("dkim", "show", "--json").stdout)}

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        return records[name.decode().rstrip(".")].encode()

    return lookup


def edit_config(server: Jitaku, old: str, new: str) -> None:
    """OLD replaced by NEW in SERVER's jitaku.toml, as `init --database postgresql` left it (its [database] with
    it: Jitaku.write_config would write the settings it started with)."""
    path = server.dir / "jitaku.toml"
    text = path.read_text()
    assert old in text, text
    path.write_text(text.replace(old, new, 1))


def session_cookie(server: Jitaku) -> str:
    """The admin's session cookie, from logging in to SERVER's web."""
    form = {"address": READER, "password": "secret-password", "next": "/admin/health"}
    with httpx.Client(base_url=f"http://127.0.0.1:{server.web_port}", timeout=60) as client:
        page = client.get("/login")
        assert client.post("/login", data={**form, "csrf": csrf_of(page.text)}).status_code == 303
        return str(client.cookies[SESSION_COOKIE])


def admin_page(server: Jitaku, cookie: str | None) -> int:
    """The admin's status page, asked as from another machine (by the MX name: loopback's trust does not count)."""
    cookies = {SESSION_COOKIE: cookie} if cookie else {}
    address = f"http://127.0.0.1:{server.web_port}/admin/status.json"
    return httpx.get(address, headers={"Host": "mx.example.test"}, cookies=cookies, timeout=60).status_code


def test_a_standby_signs_serves_tls_and_keeps_sessions_with_the_primarys_files(
    jitaku_factory: Any, shared_dir: Path
) -> None:
    primary, port, standby, copy = pair(jitaku_factory, shared_dir)
    own = secret_files(standby)
    theirs = secret_files(primary)
    assert set(own) == set(theirs) and all(own[name][0] != theirs[name][0] for name in own)  # init made its own

    primary.start()
    set_up = standby.cli("standby", "setup", "--primary", f"127.0.0.1:{port}", "--secret-file", str(copy))
    assert "wrote the primary's secret files here" in set_up.stdout
    assert secret_files(standby) == theirs
    assert {mode for name, (_, mode) in theirs.items() if name != "tls/cert.pem"} == {0o600}
    secret = copy.read_text().strip()

    # the standby serves the primary's certificate, and takes the cookies the primary's web signed
    edit_config(standby, "\n[smtp]\n", '\n[submissions]\nlisten = ["127.0.0.1:0"]\n\n[smtp]\n')
    standby.start()
    wait_until(lambda: "database_role=standby" in standby.log(), timeout=30)  # its store is the primary's copy
    served = ssl.get_server_certificate(("127.0.0.1", standby.port("submissions")), timeout=10)
    assert served.strip() == (primary.dir / "tls/cert.pem").read_text().strip()
    cookie = session_cookie(primary)
    assert admin_page(primary, cookie) == 200 and admin_page(standby, None) != 200
    assert admin_page(standby, cookie) == 200

    # a key the primary makes while both run: a new domain's, for its lists
    for server in (primary, standby):  # the same config on both boxes of a pair
        edit_config(server, '"example.org"]', '"example.org", "lists.example.test"]')
    made = primary.cli("init")  # makes what the data directory lacks: the new domain's DKIM key
    assert "lists.example.test.jitaku.key" in made.stdout
    wait_until(lambda: secret_files(standby) == secret_files(primary), timeout=PERIOD * 3)
    assert "secret_file_published file=dkim/lists.example.test.jitaku.key" in primary.log()
    assert "secret_file_mirrored file=dkim/lists.example.test.jitaku.key" in standby.log()

    # mail signed with the standby's copies verifies against what the primary published, each domain's; signed
    # with the key the standby's own init made, it would not
    dns = published_dns(primary)
    for domain in ("example.test", "lists.example.test"):
        keys = dkim.load_keys(standby.dir / "dkim", domain, "jitaku", False)
        message = MESSAGE.replace(b"alice@example.test", f"alice@{domain}".encode())
        assert dkimpy.verify(dkim.Signer(keys).sign(message, domain), dnsfunc=dns), domain
    its_own = dkim.DkimKey("example.test", "jitaku", "rsa", own["dkim/example.test.jitaku.key"][0])
    assert not dkimpy.verify(dkim.Signer([its_own]).sign(MESSAGE, "example.test"), dnsfunc=dns)
    assert "secret_file_refused" not in standby.log() + primary.log()
    assert "secret_file_published" not in standby.log() and "read-only transaction" not in standby.log()
    assert secret not in standby.log() + primary.log()


def test_a_promoted_standby_restarted_without_a_key_takes_the_tables_not_a_new_one(
    jitaku_factory: Any, shared_dir: Path
) -> None:
    """The domain's key file missing on the standby, never mirrored there (as a key the old primary made after the
    standby's last look): the promoted standby's daemon starts and writes the table's key, the one in DNS, before
    provision would make a new one and publish it over the row."""
    primary, _port, standby, standby_port = _standby_pair(jitaku_factory, shared_dir)
    name = "dkim/example.test.jitaku.key"
    assert (standby.dir / name).read_bytes() == (primary.dir / name).read_bytes()
    dns = published_dns(primary)
    primary.stop()  # the primary gone: the standby is promoted
    assert _query(standby, standby_port, "SELECT pg_promote()") == [True]
    wait_until(lambda: " event=ha_promoted " in standby.log(), timeout=60)
    standby.stop()
    (standby.dir / name).unlink()
    state = standby.dir / "ha" / "secret_files.json"
    state.write_text(json.dumps({k: v for k, v in json.loads(state.read_text()).items() if k != name}))

    before, runs = len(standby.log()), len(started(standby))
    standby.start()
    wait_until(lambda: len(started(standby)) > runs, timeout=60)
    assert (standby.dir / name).read_bytes() == (primary.dir / name).read_bytes()
    assert f"secret_file_mirrored file={name}" in standby.log()[before:]
    assert f"secret_file_published file={name}" not in standby.log()[before:]
    assert _query(standby, standby_port, f"SELECT count(*) FROM secret_files WHERE name = '{name}'") == [1]
    keys = dkim.load_keys(standby.dir / "dkim", "example.test", "jitaku", False)
    assert dkimpy.verify(dkim.Signer(keys).sign(MESSAGE, "example.test"), dnsfunc=dns)
