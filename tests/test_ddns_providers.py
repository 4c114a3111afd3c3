"""DDNS providers and public-address discovery against local stand-ins that speak each real protocol
over HTTP on loopback (MyDNS's Basic-auth login, DynDNS2's /nic/update, Cloudflare's API v4)."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from jitaku.config import ConfigError, parse
from jitaku.ddns import public_address
from jitaku.ddns.providers.cloudflare import Cloudflare
from jitaku.ddns.providers.dyndns2 import DynDns2
from jitaku.ddns.providers.mydns import MyDns
from jitaku.ddns.records import provider, secret

DOC4 = ipaddress.ip_address("203.0.113.7")  # RFC 5737: data only, never a place to connect to
DOC6 = ipaddress.ip_address("2001:db8::7")


def basic(headers: Any) -> tuple[str, str] | None:
    value = headers.get("Authorization", "")
    if not value.startswith("Basic "):
        return None
    user, _, password = base64.b64decode(value[6:]).decode().partition(":")
    return user, password


def run(coroutine: Any) -> Any:
    async def go() -> Any:
        async with httpx.AsyncClient(timeout=5) as client:
            return await coroutine(client)

    return asyncio.run(go())


def test_mydns_logs_in_with_the_master_id_and_stops_on_a_refusal(stand_in) -> None:
    def handle(method: str, path: str, query: Any, headers: Any, body: bytes) -> tuple[int, str]:
        return (200, "login ok") if basic(headers) == ("mydns123456", "right") else (401, "Unauthorized")

    server = stand_in(handle)
    answer = run(lambda c: MyDns("mydns123456", "right", f"{server.url}/login.html").update(c, DOC4))
    assert answer.ok and not answer.fatal
    refused = run(lambda c: MyDns("mydns123456", "wrong", f"{server.url}/login.html").update(c, DOC4))
    assert not refused.ok and refused.fatal and "wrong" not in refused.message and "401" in refused.message
    assert [path for _m, path, _q, _h in server.requests] == ["/login.html", "/login.html"]


@pytest.mark.parametrize(
    ("reply", "ok", "fatal", "retry_after"),
    [
        ("good 203.0.113.7", True, False, None),
        ("nochg 203.0.113.7", True, False, None),
        ("badauth", False, True, None),
        ("nohost", False, True, None),
        ("abuse", False, True, None),
        ("911", False, False, 1800.0),
        ("dnserr", False, False, 1800.0),
        ("something else", False, False, None),
    ],
)
def test_dyndns2_understands_each_reply_code(stand_in, reply, ok, fatal, retry_after) -> None:
    server = stand_in(lambda *request: (200, reply))
    answer = run(lambda c: DynDns2("home.example.org", "user", "pw", server.url).update(c, DOC4))
    assert (answer.ok, answer.fatal, answer.retry_after) == (ok, fatal, retry_after)
    ((method, path, query, headers),) = server.requests
    assert (method, path, query) == ("GET", "/nic/update", {"hostname": ["home.example.org"], "myip": [str(DOC4)]})
    assert basic(headers) == ("user", "pw") and headers["User-Agent"].startswith("jitaku")


def test_cloudflare_creates_then_updates_the_record_by_zone_and_name(stand_in) -> None:
    records: dict[str, dict[str, Any]] = {}

    def handle(method: str, path: str, query: Any, headers: Any, body: bytes) -> tuple[int, Any]:
        if headers.get("Authorization") != "Bearer token-1":
            return 403, {"success": False, "errors": [{"code": 9109, "message": "Invalid access token"}]}
        if path == "/zones":
            zones = [{"id": "z1", "name": "example.org"}] if query.get("name") == ["example.org"] else []
            return 200, {"success": True, "result": zones}
        if path == "/zones/z1/dns_records" and method == "GET":
            found = [r for r in records.values() if [r["type"]] == query["type"] and [r["name"]] == query["name"]]
            return 200, {"success": True, "result": found}
        record = json.loads(body)
        if method == "POST":
            record["id"] = f"r{len(records) + 1}"
        else:
            record["id"] = path.rsplit("/", 1)[1]
        records[record["id"]] = record
        return 200, {"success": True, "result": record}

    server = stand_in(handle)
    updater = Cloudflare("home.example.org", "example.org", "token-1", server.url)
    assert run(lambda c: updater.update(c, DOC4)).ok
    assert run(lambda c: updater.update(c, ipaddress.ip_address("198.51.100.9"))).ok
    assert run(lambda c: updater.update(c, DOC6)).ok
    assert sorted((r["type"], r["content"]) for r in records.values()) == [("A", "198.51.100.9"), ("AAAA", str(DOC6))]
    assert [m for m, *_ in server.requests].count("PUT") == 1
    refused = run(lambda c: Cloudflare("home.example.org", "example.org", "bad", server.url).update(c, DOC4))
    assert not refused.ok and refused.fatal and "bad" not in refused.message
    missing = run(lambda c: Cloudflare("x.example.net", "example.net", "token-1", server.url).update(c, DOC4))
    assert not missing.ok and missing.fatal and "example.net" in missing.message


def test_public_address_is_the_majority_of_sane_answers(stand_in) -> None:
    answers = {
        "a": "203.0.113.7\n",
        "b": "203.0.113.7",
        "c": "198.51.100.1",
        "lan": "192.168.1.10",
        "cgnat": "100.64.3.4",
    }
    server = stand_in(lambda method, path, *rest: (200, answers[path.strip("/")]))
    sources = [f"{server.url}/{name}" for name in ("a", "b", "c")]

    async def discover(client: httpx.AsyncClient, names: list[str]) -> Any:
        return await public_address.discover(client, [f"{server.url}/{name}" for name in names])

    assert run(lambda c: public_address.discover(c, sources)) == DOC4
    assert run(lambda c: discover(c, ["a", "c"])) is None  # one against one: no majority
    assert run(lambda c: discover(c, ["lan", "cgnat", "c"])) == ipaddress.ip_address("198.51.100.1")
    assert run(lambda c: discover(c, ["lan", "cgnat"])) is None
    for text in ("10.1.2.3", "127.0.0.1", "169.254.1.1", "172.20.0.1", "fe80::1", "fd00::1", "::1", "nonsense"):
        assert public_address.parse_answer(text) is None, text
    for text in ("192.0.2.1", "198.51.100.1", "203.0.113.250", "2001:db8::1", "8.8.8.8"):
        assert public_address.parse_answer(text) is not None, text


def test_a_password_file_must_be_the_owners_alone(tmp_path: Path) -> None:
    settings = parse(
        'domains = ["example.org"]\n[[ddns]]\nprovider = "cloudflare"\nname = "home.example.org"\n'
        'password_file = "cf.token"\n',
        tmp_path / "jitaku.toml",
    )
    (record,) = settings.ddns
    token = tmp_path / "cf.token"
    token.write_text("token-1\n")
    token.chmod(0o644)
    with pytest.raises(ConfigError, match="others may read it"):
        secret(record, tmp_path)
    token.chmod(0o600)
    assert secret(record, tmp_path) == "token-1"
    assert isinstance(provider(record, secret(record, tmp_path)), Cloudflare)
