"""Training the spam engines over IMAP (issue 23), with a real jitaku serve, rspamd (and its Redis) and spamd:
a message moved into Junk is learned as spam by both, once however often it comes back; moved out of Junk
(but into the trash) it is learned as ham; a junk keyword teaches spam, a not-junk one ham only where it rescues
a message; with an engine down IMAP answers at once and the learning happens when the engine is back."""

from __future__ import annotations

import imaplib
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.integration.engines.rspamd import Rspamd, rspamd_engine  # noqa: F401 (a fixture)
from tests.integration.engines.spamd import Spamd, spamd  # noqa: F401 (a fixture)
from tests.integration.harness import Jitaku
from tests.peers import free_port, swaks

ALICE, PASSWORD = "alice@example.test", "secret-password"
WAIT = 20.0  # seconds a learning may take on a loaded machine; the tests wait only as long as it does take


def deliver(server: Jitaku) -> str:
    """A plain message to Alice's INBOX, unlike any other (the engines' Bayes databases last the session)."""
    token = secrets.token_hex(8)
    words = " ".join(secrets.token_hex(3) for _ in range(30))
    result = swaks(
        "--server", f"127.0.0.1:{server.smtp_port}", "--from", "someone@remote.example", "--to", ALICE,
        "--header", f"Subject: offer {token}", "--body", f"Hello Alice, {words}",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout
    return token


def until(what: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return True
        time.sleep(0.2)
    return what()


def rspamd_learned(engine: Rspamd) -> int:
    return int(engine.stat()["learned"])  # type: ignore[call-overload]


def login(server: Jitaku) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
    imap.login(ALICE, PASSWORD)
    return imap


def timed(call: Callable[[], tuple[str, Any]]) -> tuple[str, float]:
    start = time.monotonic()
    status, _data = call()
    return status, time.monotonic() - start


@pytest.fixture
def trained(jitaku_factory: Any, rspamd_engine: Rspamd, spamd: Spamd) -> Iterator[Jitaku]:  # noqa: F811
    server: Jitaku = jitaku_factory()
    server.settings["filters"] = {
        "timeout": 10,
        "rspamd": {
            "url": rspamd_engine.url,
            "controller_url": rspamd_engine.controller_url,
            "password": rspamd_engine.password,
        },
        "spamassassin": {"address": f"{spamd.host}:{spamd.port}"},
    }
    server.settings["imap"]["workers"] = 2  # a move in either process is learned by the main one
    server.write_config()
    server.init(ALICE)
    server.start()
    yield server


def test_moving_into_junk_teaches_spam_once_and_out_of_it_ham(
    trained: Jitaku,
    rspamd_engine: Rspamd,  # noqa: F811
    spamd: Spamd,  # noqa: F811
) -> None:
    deliver(trained)
    learned, (nspam, nham) = rspamd_learned(rspamd_engine), spamd.learned()
    imap = login(trained)
    imap.select("INBOX")
    assert imap.uid("MOVE", "1", "Junk")[0] == "OK"
    assert until(lambda: rspamd_learned(rspamd_engine) > learned and spamd.learned()[0] > nspam), trained.log()
    assert "event=learned engine=rspamd kind=spam" in trained.log()
    assert "event=learned engine=spamassassin kind=spam" in trained.log()
    learned, (nspam, nham) = rspamd_learned(rspamd_engine), spamd.learned()

    # the same message copied into Junk again (a copy of its copy): nothing more is learned
    imap.select("Junk")
    assert imap.uid("COPY", "1", "Junk")[0] == "OK"
    assert until(lambda: trained.read(lambda s: s.run("SELECT COUNT(*) FROM filter_training")[0][0]) == 0)
    assert trained.log().count("event=learned engine=spamassassin kind=spam") == 1
    assert rspamd_learned(rspamd_engine) == learned and spamd.learned() == (nspam, nham)

    # out of Junk into INBOX: ham
    assert imap.uid("MOVE", "1", "INBOX")[0] == "OK"
    assert until(lambda: spamd.learned()[1] > nham), trained.log()
    assert until(lambda: "event=learned engine=rspamd kind=ham" in trained.log()), trained.log()
    imap.logout()


def test_junk_keywords_teach_spam_and_not_junk_ones_ham_only_of_a_message_they_rescue(
    trained: Jitaku,
    spamd: Spamd,  # noqa: F811
) -> None:
    for _ in range(4):
        deliver(trained)
    nspam, nham = spamd.learned()
    imap = login(trained)
    imap.select("INBOX")
    # a client's own junk filter passing new mail, Apple Mail's keyword and Thunderbird's: nothing learned, the
    # learner finding that our filter did not call them spam
    assert imap.uid("STORE", "1", "+FLAGS", "($NotJunk)")[0] == "OK"
    assert imap.uid("STORE", "2", "+FLAGS", "(NonJunk)")[0] == "OK"
    assert until(lambda: trained.read(lambda s: s.run("SELECT COUNT(*) FROM filter_training")[0][0]) == 0)
    assert "kind=ham" not in trained.log()
    # Thunderbird's Junk button, then its Not Junk (it adds the one keyword, then removes the other): spam, ham
    assert imap.uid("STORE", "3", "+FLAGS", "(Junk)")[0] == "OK"
    assert imap.uid("STORE", "3", "+FLAGS", "(NonJunk)")[0] == "OK"
    assert imap.uid("STORE", "3", "-FLAGS", "(Junk)")[0] == "OK"
    # moved into Junk (spam), then $NotJunk there: ham
    assert imap.uid("MOVE", "4", "Junk")[0] == "OK"
    imap.select("Junk")
    assert imap.uid("STORE", "1", "+FLAGS", "($NotJunk)")[0] == "OK"
    # the learner takes what was recorded in order: once the last is learned, all are
    assert until(lambda: trained.log().count("event=learned engine=spamassassin kind=ham") == 2), trained.log()
    assert until(lambda: trained.read(lambda s: s.run("SELECT COUNT(*) FROM filter_training")[0][0]) == 0)
    assert trained.log().count("event=learned engine=spamassassin kind=spam") == 2
    assert trained.log().count("event=learned engine=rspamd kind=ham") == 2
    assert spamd.learned() == (nspam, nham + 2)  # each spam forgotten when it was learned again as ham
    imap.logout()


def test_spam_deleted_from_junk_teaches_nothing_into_a_trash_folder_the_client_made_nor_expunged(
    trained: Jitaku,
    spamd: Spamd,  # noqa: F811
) -> None:
    for _ in range(3):
        deliver(trained)
    nspam, nham = spamd.learned()
    imap = login(trained)
    imap.select("INBOX")
    assert imap.uid("MOVE", "1:3", "Junk")[0] == "OK"
    assert until(lambda: spamd.learned()[0] == nspam + 3), trained.log()
    assert until(lambda: trained.read(lambda s: s.run("SELECT COUNT(*) FROM filter_training")[0][0]) == 0)
    assert imap.create('"Deleted Items"')[0] == "OK"  # Outlook's trash: no \Trash
    imap.select("Junk")
    assert imap.uid("MOVE", "1", '"Deleted Items"')[0] == "OK"
    assert imap.uid("STORE", "2", "+FLAGS", "(\\Deleted)")[0] == "OK"
    assert imap.expunge()[0] == "OK"
    # the last one filed in Archive is ham: once it is learned, anything recorded before it was too
    assert imap.uid("MOVE", "3", "Archive")[0] == "OK"
    assert until(lambda: spamd.learned()[1] > nham), trained.log()
    assert spamd.learned() == (nspam + 2, nham + 1)  # SpamAssassin forgets a spam it learns again as ham
    assert trained.log().count("event=learned engine=spamassassin kind=ham") == 1
    imap.logout()


class Forwarder:
    """A TCP port that forwards to an engine once opened: the engine down, then back."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.port, self.target = port, target
        self._listener: socket.socket | None = None

    def open(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()


def test_an_engine_down_never_slows_imap_and_learns_when_back(
    jitaku_factory: Any,
    spamd: Spamd,  # noqa: F811
) -> None:
    forwarder = Forwarder(free_port(), (spamd.host, spamd.port))
    server: Jitaku = jitaku_factory()
    server.settings["filters"] = {"timeout": 10, "spamassassin": {"address": f"127.0.0.1:{forwarder.port}"}}
    server.settings["imap"]["workers"] = 2
    server.write_config()
    server.init(ALICE)
    server.start()
    try:
        deliver(server)
        nspam, _nham = spamd.learned()
        imap = login(server)
        imap.select("INBOX")
        status, took = timed(lambda: imap.uid("MOVE", "1", "Junk"))
        assert status == "OK" and took < 5  # an engine's timeout is 10 s: IMAP did not wait on it
        assert until(lambda: "event=learn_failed engine=spamassassin kind=spam" in server.log()), server.log()
        forwarder.open()  # spamd is back: the retry (2 s after the failure) teaches it
        assert 'retry="in 2s"' in server.log()
        assert until(lambda: spamd.learned()[0] > nspam), server.log()
        assert "event=learned engine=spamassassin kind=spam" in server.log()
        imap.logout()
    finally:
        forwarder.close()
