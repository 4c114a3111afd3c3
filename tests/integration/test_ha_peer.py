"""The pair's signed requests between two daemons on managed PostgreSQL clusters (jitaku.ha.peer, web/ha.py): each
box tells the other how it stands; a request not signed with the pair's secret is refused and changes nothing; a
fence makes the primary write DIR/ha/fenced before it answers 202. What the daemon then does is
tests/integration/test_ha_daemon.py's.

The tests run as root (CI does): the clusters run as `postgres`, hence shared_dir."""

from __future__ import annotations

import json
import os
import re
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from jitaku.ha import peer
from jitaku.ha.peer import PeerError
from jitaku.ha.standby import slot_name
from tests.integration.test_standby import no_cluster_left, pair  # noqa: F401 - the fixture stops the clusters
from tests.peers import wait_until

ANSWER = 30.0  # seconds each request may take: the boxes restart their services under a loaded suite

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs PostgreSQL as another user: needs root (CI is)")
LSN = re.compile(r"[0-9A-F]+/[0-9A-F]+")


def raw(port: int, body: bytes, signature: str) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/ha/fence", data=body, method="POST", headers={peer.HEADER: signature}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code


def answered(url: str, secret: str) -> dict[str, Any] | None:
    """The state, or None while the box's web is not back or its database not answering."""
    try:
        return peer.state(url, secret, ANSWER)
    except PeerError:
        return None


def test_each_box_tells_the_other_how_it_stands_and_the_primary_is_fenced_by_a_signed_request_alone(
    jitaku_factory: Any, shared_dir: Path
) -> None:
    primary, port, standby, copy = pair(jitaku_factory, shared_dir)
    secret = copy.read_text().strip()
    primary.start()
    standby.cli("standby", "setup", "--primary", f"127.0.0.1:{port}", "--secret-file", str(copy), "--name", "two")
    remembered = standby.dir / "ha" / "peer_host"  # where the standby finds the primary's web
    assert remembered.read_text() == "127.0.0.1\n" and remembered.stat().st_mode & 0o777 == 0o600
    standby.start()
    ours, theirs = f"http://127.0.0.1:{primary.web_port}", f"http://127.0.0.1:{standby.web_port}"

    state = peer.state(ours, secret, ANSWER)
    assert state is not None, primary.log()[-2000:]
    assert (state["role"], state["fenced"], state["timeline"], state["cluster"]) == ("primary", False, 1, "running")
    assert LSN.fullmatch(state["lsn"]) and state["name"] == slot_name(None) and state["checkpoint"] is None
    seen = peer.state(theirs, secret, ANSWER)
    assert seen is not None, standby.log()[-2000:]
    assert (seen["role"], seen["fenced"], seen["timeline"], seen["cluster"]) == ("standby", False, 1, "standby")
    assert LSN.fullmatch(seen["lsn"])

    # not the pair's secret, a replayed request, a body too big: refused, and nothing changes
    for url in (ours, theirs):
        with pytest.raises(PeerError, match="403"):
            peer.state(url, "not-the-secret", ANSWER)
    with pytest.raises(PeerError, match=r"\(403\)"):
        peer.fence(ours, "not-the-secret", "failover", "two", None, ANSWER)
    old = json.dumps({"at": time.time() - 300, "purpose": "failover", "by": "two", "rejoin": None}).encode()
    assert raw(primary.web_port, old, peer.sign(secret, old)) == 403
    big = json.dumps({"at": time.time(), "purpose": "failover", "by": "x" * 5000, "rejoin": None}).encode()
    assert raw(primary.web_port, big, peer.sign(secret, big)) == 413
    fenced = primary.dir / "ha" / "fenced"
    assert not fenced.exists() and not (primary.dir / "ha" / "peer_host").exists()
    with socket.create_connection(("127.0.0.1", primary.smtp_port), timeout=10) as smtp:
        assert smtp.makefile("rb").readline().startswith(b"220 ")  # still the primary, taking mail
    again = peer.state(ours, secret, ANSWER)
    assert again is not None and (again["role"], again["fenced"]) == ("primary", False)

    # a standby is not fenced: it is not the primary
    with pytest.raises(PeerError, match=r"\(409\): this box is a standby"):
        peer.fence(theirs, secret, "failover", "one", None, ANSWER)
    assert not (standby.dir / "ha" / "fenced").exists()

    assert peer.fence(ours, secret, "failover", "two", None, ANSWER) is True
    assert fenced.stat().st_mode & 0o777 == 0o600
    written = json.loads(fenced.read_text())
    assert (written["purpose"], written["by"], written["rejoin"]) == ("failover", "two", None)
    assert (primary.dir / "ha" / "peer_host").read_text() == "127.0.0.1\n"  # the box that fenced it
    assert "event=ha_fenced purpose=failover" in primary.log()
    # fenced, it says so (once its web answers again); asked again for the same, it answers as before (a retry
    # after a lost answer), and for another purpose it refuses
    fenced_state = wait_until(lambda: answered(ours, secret), timeout=60)
    assert fenced_state["fenced"] is True and fenced_state["role"] == "primary"
    assert peer.fence(ours, secret, "failover", "two", None, ANSWER) is True
    with pytest.raises(PeerError, match=r"\(409\): this box is fenced already \(failover, by two\)"):
        # asked again until its web answers: a loaded box's web may still be restarting fenced (False: no answer)
        wait_until(lambda: peer.fence(ours, secret, "switchover", "two", f"127.0.0.1:{port}", ANSWER), timeout=90)
    assert secret not in primary.log() + standby.log()
