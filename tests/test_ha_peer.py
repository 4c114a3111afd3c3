"""The signed requests between the two boxes of a pair: what the server takes, what the client believes, and where
the client finds its peer."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from jitaku.config import Config, ConfigError, parse
from jitaku.ha import peer
from jitaku.ha.peer import HEADER, PeerError, Refused, TooLarge, sign, verify
from jitaku.provision import TEMPLATE

SECRET = "s3cret-of-the-pair-0123456789abcdef"
PATH = Path("/etc/jitaku/jitaku.toml")
STATE = {"role": "primary", "fenced": False, "timeline": 1, "lsn": "0/3000060", "name": "one"}


def body(**fields: object) -> bytes:
    return json.dumps({"at": time.time(), **fields}).encode()


def test_a_request_signed_with_the_secret_is_taken() -> None:
    sent = body(purpose="failover")
    assert verify(SECRET, sent, sign(SECRET, sent))["purpose"] == "failover"


def test_a_wrong_secret_a_missing_signature_or_an_edited_body_is_refused() -> None:
    sent = body()
    for signature in (sign("another-secret", sent), None, "", "zz", sign(SECRET, sent).upper()):
        with pytest.raises(Refused) as refused:
            verify(SECRET, sent, signature)
        assert refused.value.status == 403
    with pytest.raises(Refused, match="wrong signature"):
        verify(SECRET, sent.replace(b"{", b'{"purpose": "switchover", ', 1), sign(SECRET, sent))


def test_without_a_secret_nothing_is_taken() -> None:
    sent = body()
    for secret in (None, ""):
        with pytest.raises(Refused, match="no replication secret"):
            verify(secret, sent, sign("", sent))


def test_an_old_or_future_request_is_refused_as_replayed() -> None:
    now = 1_800_000_000.0
    for at in (now - 61, now + 61, float("nan")):
        sent = json.dumps({"at": at}).encode()
        with pytest.raises(Refused, match='clocks apart|no "at"'):
            verify(SECRET, sent, sign(SECRET, sent), now=now)
    for sent in (b"{}", b'{"at": "now"}', b'{"at": true}', b"[1]", b"not json"):
        with pytest.raises(Refused):
            verify(SECRET, sent, sign(SECRET, sent), now=now)
    fresh = json.dumps({"at": now - 59}).encode()
    assert verify(SECRET, fresh, sign(SECRET, fresh), now=now)["at"] == now - 59


def test_a_big_body_is_refused_before_its_signature_is_looked_at() -> None:
    sent = body(by="x" * peer.MAX_BODY)
    with pytest.raises(TooLarge) as refused:
        verify(SECRET, sent, sign(SECRET, sent))
    assert refused.value.status == 413


def test_a_refusal_never_says_the_secret() -> None:
    sent = body()
    for secret, signature in ((SECRET, sign("x", sent)), (SECRET, None)):
        with pytest.raises(Refused) as refused:
            verify(secret, sent, signature)
        assert SECRET not in str(refused.value)


# The client, against a small real HTTP server on loopback that answers as a peer would (or would not)

Answer = Callable[[bytes, str], tuple[int, bytes, str]]  # (request body, its signature) -> status, body, signature


@pytest.fixture
def server() -> Iterator[Callable[[Answer], str]]:
    servers: list[ThreadingHTTPServer] = []

    def serve(answer: Answer) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                sent = self.rfile.read(int(self.headers["Content-Length"]))
                status, text, signature = answer(sent, self.headers.get(HEADER, ""))
                self.send_response(status)
                if signature:
                    self.send_header(HEADER, signature)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            def log_message(self, *args: object) -> None:
                pass

        running = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        servers.append(running)
        threading.Thread(target=running.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{running.server_address[1]}"

    yield serve
    for running in servers:
        running.shutdown()
        running.server_close()


def as_peer(status: int, fields: dict[str, object], secret: str = SECRET) -> Answer:
    def answer(sent: bytes, signature: str) -> tuple[int, bytes, str]:
        verify(secret, sent, signature)
        text = json.dumps(fields).encode()
        return status, text, peer.sign_answer(secret, signature, text)

    return answer


def test_state_is_what_the_peer_answered(server: Callable[[Answer], str]) -> None:
    assert peer.state(server(as_peer(200, STATE)), SECRET, 5) == STATE


def test_fence_is_true_once_the_peer_fenced_itself(server: Callable[[Answer], str]) -> None:
    url = server(as_peer(202, {"fenced": True}))
    assert peer.fence(url, SECRET, "switchover", "two", "192.168.1.11:5433", 5) is True


def test_a_peer_that_refuses_or_is_not_the_primary_is_a_peer_error(server: Callable[[Answer], str]) -> None:
    refused = server(lambda sent, signature: (403, b'{"error": "refused"}', ""))
    with pytest.raises(PeerError, match="403: refused"):
        peer.state(refused, SECRET, 5)
    standby = server(as_peer(409, {"error": "this box is a standby"}))
    with pytest.raises(PeerError, match=r"\(409\): this box is a standby"):
        peer.fence(standby, SECRET, "failover", "two", None, 5)


def test_an_answer_not_signed_with_our_secret_is_not_believed(server: Callable[[Answer], str]) -> None:
    """Another box on the LAN saying "I am the primary, on a newer timeline" must not fence this one."""
    unsigned = server(lambda sent, signature: (200, json.dumps(STATE).encode(), ""))
    with pytest.raises(PeerError, match="signature"):
        peer.state(unsigned, SECRET, 5)

    def replayed(sent: bytes, signature: str) -> tuple[int, bytes, str]:
        text = json.dumps(STATE).encode()
        return 200, text, peer.sign_answer(SECRET, sign(SECRET, b'{"at": 1}'), text)

    with pytest.raises(PeerError, match="signature"):
        peer.state(server(replayed), SECRET, 5)


def test_garbage_or_a_huge_answer_is_a_peer_error(server: Callable[[Answer], str]) -> None:
    def garbage(sent: bytes, signature: str) -> tuple[int, bytes, str]:
        return 200, b"<html>", peer.sign_answer(SECRET, signature, b"<html>")

    with pytest.raises(PeerError, match="no JSON"):
        peer.state(server(garbage), SECRET, 5)
    with pytest.raises(PeerError, match="more than"):
        peer.state(server(as_peer(200, {**STATE, "pad": "x" * peer.MAX_ANSWER})), SECRET, 5)


def test_an_unreachable_or_silent_peer_is_none_within_the_timeout() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    assert peer.state(f"http://127.0.0.1:{port}", SECRET, 5) is None
    assert peer.fence(f"http://127.0.0.1:{port}", SECRET, "failover", "two", None, 5) is False
    with socket.socket() as silent:  # accepts (the kernel's backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        started = time.monotonic()
        assert peer.state(f"http://127.0.0.1:{silent.getsockname()[1]}", SECRET, 0.5) is None
        assert time.monotonic() - started < 5


def config(tmp_path: Path, text: str = "") -> Config:
    return Config(parse(f'domains = ["example.org"]\n[web]\nlisten = ["0.0.0.0:8080"]\n{text}', PATH), tmp_path)


def test_the_peer_is_the_configured_url_else_the_remembered_host_on_our_web_port(tmp_path: Path) -> None:
    assert peer.peer_url(config(tmp_path)) is None
    peer.remember_host(config(tmp_path), "192.168.1.10")
    assert peer.peer_host_path(config(tmp_path)).stat().st_mode & 0o777 == 0o600
    assert peer.peer_url(config(tmp_path)) == "http://192.168.1.10:8080"
    peer.remember_host(config(tmp_path), "fd00::1")
    assert peer.peer_url(config(tmp_path)) == "http://[fd00::1]:8080"
    configured = config(tmp_path, '[ha]\npeer = "https://one.lan:8443/"\n')
    assert peer.peer_url(configured) == "https://one.lan:8443"
    with pytest.raises(ValueError, match="neither"):
        peer.remember_host(config(tmp_path), "one.lan\nevil")


def test_a_peer_that_is_no_web_base_url_is_a_config_error() -> None:
    for wrong in ("192.168.1.11:8080", "ftp://one.lan", "http://u:p@one.lan", "http://one.lan/api", "http://:80"):
        with pytest.raises(ConfigError, match="jitaku.toml:3: "):
            parse(f'domains = ["example.org"]\n[ha]\npeer = "{wrong}"\n', PATH)


def test_the_template_documents_the_peer() -> None:
    assert '# peer = "http://' in TEMPLATE


def test_a_public_install_asks_its_peer_on_port_80_not_plain_http_on_443(tmp_path: Path) -> None:
    """`jitaku init --public` listens on 443 first, then 80: plain HTTP to the peer's TLS port would find no peer
    when a failover needs one."""
    public = Config(parse('domains = ["example.org"]\n[web]\nlisten = ["0.0.0.0:443", "0.0.0.0:80"]\n', PATH), tmp_path)
    peer.remember_host(public, "192.168.1.10")
    assert peer.peer_url(public) == "http://192.168.1.10:80"
    only_tls = Config(parse('domains = ["example.org"]\n[web]\nlisten = ["[::]:443"]\n', PATH), tmp_path)
    assert peer.peer_url(only_tls) == "https://192.168.1.10"
