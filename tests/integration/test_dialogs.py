"""SMTP dialogs kept as data files (tests/dialogs/*.txt), each played against one running jitaku.

A file is a conversation, a line each way, read top to bottom:

    # text          a comment: what the dialog shows
    listener: NAME  (before the first exchange) the listener to talk to, "mx" unless said
    C: text         sent as is, with CRLF; {N*c} stands for N copies of the character c
    S: text         the server's next line, exactly
    S~ regex        the server's next line, matched whole by the regular expression
    R: code         a whole reply with that code, however many lines (the text does not matter here)
    closed          the server has closed the connection

A failure names the file and its line. The files pin jitaku's replies as they are: a change of wording
shows here first, so it is made on purpose.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dnslib.server import DNSServer

from tests.integration.harness import Jitaku
from tests.peers import Zone, free_port, serve, stop_serving

DIALOGS = Path(__file__).parent.parent / "dialogs"
ALICE = "alice@example.test"


@dataclass(frozen=True)
class Step:
    line: int
    kind: str  # "C:", "S:", "S~", "R:", "closed"
    text: str


def parse(path: Path) -> tuple[str, list[Step]]:
    listener = "mx"
    steps: list[Step] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("listener:"):
            assert not steps, f"{path.name}:{number}: the listener is named before the first exchange"
            listener = line.partition(":")[2].strip()
        elif line.strip() == "closed":
            steps.append(Step(number, "closed", ""))
        elif line[:2] in ("C:", "S:", "S~", "R:"):
            steps.append(Step(number, line[:2], line[2:].removeprefix(" ")))
        else:
            raise AssertionError(f"{path.name}:{number}: not a dialog line: {line!r}")
    return listener, steps


def expanded(text: str) -> bytes:
    return re.sub(r"\{(\d+)\*(.)\}", lambda m: m.group(2) * int(m.group(1)), text).encode("utf-8")


def play(path: Path, port: int, steps: list[Step]) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock, sock.makefile("rb") as replies:

        def next_line(step: Step) -> str:
            try:
                line = replies.readline()
            except TimeoutError:
                raise AssertionError(f"{path.name}:{step.line}: the server said nothing in 10 s") from None
            assert line.endswith(b"\r\n"), f"{path.name}:{step.line}: the server closed or sent {line!r}"
            return line[:-2].decode("utf-8", "replace")

        for step in steps:
            where = f"{path.name}:{step.line}"
            if step.kind == "C:":
                sock.sendall(expanded(step.text) + b"\r\n")
            elif step.kind == "S:":
                said = next_line(step)
                assert said == step.text, f"{where}: expected {step.text!r}, the server said {said!r}"
            elif step.kind == "S~":
                said = next_line(step)
                assert re.fullmatch(step.text, said), f"{where}: expected /{step.text}/, the server said {said!r}"
            elif step.kind == "R:":
                while (said := next_line(step))[3:4] == "-":
                    assert said.startswith(step.text), f"{where}: expected a {step.text} reply, got {said!r}"
                assert said.startswith(step.text + " "), f"{where}: expected a {step.text} reply, got {said!r}"
            else:
                try:
                    rest = replies.read()
                except ConnectionResetError:
                    rest = b""
                assert rest == b"", f"{where}: expected the server to close, it sent {rest!r}"


@pytest.fixture(scope="module")
def dialog_host(tmp_path_factory: pytest.TempPathFactory, prepared_dirs: Path) -> Iterator[Jitaku]:
    """One jitaku for every dialog (each opens its own session), with DNS answered on loopback (an empty
    zone: SPF finds nothing, at once)."""
    dns_port = free_port()
    servers = [DNSServer(Zone(), address="127.0.0.1", port=dns_port, tcp=tcp) for tcp in (False, True)]
    for server in servers:
        serve(server.server)
    host = Jitaku(tmp_path_factory.mktemp("dialogs") / "jitaku", dns_port, prepared_dirs)
    host.init(ALICE)
    host.start()
    yield host
    host.stop()
    for server in servers:
        stop_serving(server.server)


@pytest.mark.parametrize("path", sorted(DIALOGS.glob("*.txt")), ids=lambda path: path.stem)
def test_dialog(path: Path, dialog_host: Jitaku) -> None:
    listener, steps = parse(path)
    play(path, dialog_host.port(listener), steps)


def test_a_dot_stuffed_line_is_stored_with_one_dot(dialog_host: Jitaku) -> None:
    """What data_dot_stuffing.txt sent, as alice reads it."""
    path = DIALOGS / "data_dot_stuffing.txt"
    listener, steps = parse(path)
    play(path, dialog_host.port(listener), steps)
    body = [body for body in dialog_host.stored_bodies(ALICE) if b"Subject: dots" in body][-1]
    assert body.endswith(b"\r\n\r\n.a line that begins with a dot\r\n..\r\n")
