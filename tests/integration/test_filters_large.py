"""A zip bomb and a 25 MB attachment through the MX with `[filters.clamav]` on (issue 23, "Bad input"): a real
`jitaku serve` and a real clamd, mail sent with swaks as a stranger's server sends it. What a user sees: the
reply to DATA, what the mailbox holds, and X-Virus-Status on a message the scanner saw only part of (past
`[filters.clamav] max_size`, which is all jitaku sends, or past clamd's own MaxFileSize); and jitaku's peak memory
stays far below what the bomb unpacks to or a few copies of the large message would take."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.integration.engines.clamav import (
    EICAR,
    EICAR_SIGNATURE,
    PATTERN,
    PATTERN_SIGNATURE,
    STREAM_MAX,
    Clamd,
    clamd,  # noqa: F401 (a fixture)
    running_clamd,
)
from tests.integration.harness import Jitaku
from tests.integration.test_engine_clamav import zip_bomb
from tests.integration.test_filters import ALICE, STRANGER, folder
from tests.peers import rejection, swaks

MIB = 1024 * 1024
BIG = 25 * MIB  # the attachment: base64 makes a message of about 34 MB
MAX_MESSAGE = 48 * MIB  # [smtp] max_message_size, past the default 25 MiB so that the 34 MB message is taken
GROWTH_MIB = 300  # jitaku's peak resident memory may grow by this much, all its processes together
PARTLY = re.compile(rb"^X-Virus-Status: Partly scanned \(clamav: (.*)\)\r$", re.MULTILINE)


def start(factory: Any, address: str, **clamav: Any) -> Jitaku:
    server: Jitaku = factory()
    server.settings["smtp"]["max_message_size"] = MAX_MESSAGE
    server.settings["filters"] = {"timeout": 60, "clamav": {"address": address, **clamav}}
    server.write_config()
    server.init(ALICE)
    server.start()
    return server


def send(server: Jitaku, *files: Path) -> Any:
    attached = [arg for file in files for arg in ("--attach-type", "application/octet-stream", "--attach", f"@{file}")]
    port = f"127.0.0.1:{server.smtp_port}"
    return swaks("--server", port, "--from", STRANGER, "--to", ALICE, "--body", "see the files", *attached, timeout=300)


def peak_mib(server: Jitaku) -> float:
    """The peak resident memory of `jitaku serve` and its children so far (VmHWM), summed, in MiB."""
    assert server.process is not None
    daemon = psutil.Process(server.process.pid)
    return sum(_vm_hwm(p.pid) for p in [daemon, *daemon.children(recursive=True)]) / MIB


def _vm_hwm(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:  # a child that ended meanwhile
        return 0
    return next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmHWM:"))


def partly(message: bytes) -> list[bytes]:
    """What X-Virus-Status says of how much the scanner saw, for each such field in MESSAGE's header."""
    return PARTLY.findall(message.partition(b"\r\n\r\n")[0] + b"\r\n")


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """The attachments: a zip bomb (384 MiB of zeros in under a megabyte), the same bomb with the EICAR file
    behind it, 25 MiB of bytes, and a file holding the made-up virus pattern."""
    made = {
        "bomb.zip": zip_bomb(384 * MIB),
        "bomb-eicar.zip": zip_bomb(384 * MIB, EICAR),
        "big.bin": bytes(range(256)) * (BIG // 256),
        "pattern.txt": b"Nothing to see here.\r\n" + PATTERN + b"\r\n",
    }
    for name, data in made.items():
        (tmp_path / name).write_bytes(data)
    return {name: tmp_path / name for name in made}


def test_a_zip_bomb_is_delivered_and_a_virus_behind_one_is_refused(
    jitaku_factory: Any,
    clamd: Clamd,  # noqa: F811
    files: dict[str, Path],
) -> None:
    assert files["bomb.zip"].stat().st_size < MIB  # small on the wire
    server = start(jitaku_factory, clamd.address)
    before = peak_mib(server)
    bomb = send(server, files["bomb.zip"])
    assert bomb.returncode == 0, bomb.stdout  # clamd skips a member past its MaxFileSize: no virus, delivered
    (stored,) = folder(server, ALICE)
    assert b'filename="bomb.zip"' in stored
    behind = send(server, files["bomb-eicar.zip"])
    said = rejection(behind.stdout)
    assert said.startswith("554 5.7.1") and EICAR_SIGNATURE in said, behind.stdout  # the bomb hides nothing
    assert len(folder(server, ALICE)) == 1
    grew = peak_mib(server) - before
    print(f"jitaku's peak resident memory grew {grew:.1f} MiB over two zip bombs")
    assert grew < GROWTH_MIB


def test_a_25_mb_attachment_is_scanned_up_to_max_size_and_delivered_saying_so(
    jitaku_factory: Any,
    clamd: Clamd,  # noqa: F811
    files: dict[str, Path],
) -> None:
    server = start(jitaku_factory, clamd.address)  # max_size: its default, 25 MiB, the default largest message
    before = peak_mib(server)
    # the pattern comes after 25 MiB of attachment, past the 25 MiB sent to clamd: not seen
    big = send(server, files["big.bin"], files["pattern.txt"])
    assert big.returncode == 0, big.stdout[-2000:]
    (stored,) = folder(server, ALICE)
    assert len(stored) > 33 * 10**6
    (said,) = partly(stored)
    how_much = re.fullmatch(rb"clean in the first (\d+) of (\d+) bytes", said)
    assert how_much is not None, said
    scanned, length = int(how_much[1]), int(how_much[2])
    assert scanned == 25 * MIB and scanned < length <= len(stored)
    assert "filter_partial" in server.log() and "engine=clamav" in server.log()
    grew = peak_mib(server) - before
    print(f"{len(stored) / MIB:.1f} MiB message: jitaku's peak resident memory grew {grew:.1f} MiB")
    assert grew < GROWTH_MIB

    server.stop()  # max_size up to clamd's StreamMaxLength: all of it is scanned, and the pattern found
    server.settings["filters"]["clamav"]["max_size"] = STREAM_MAX
    server.write_config()
    server.start()
    whole = send(server, files["big.bin"], files["pattern.txt"])
    said_now = rejection(whole.stdout)
    assert said_now.startswith("554 5.7.1") and PATTERN_SIGNATURE in said_now, whole.stdout[-2000:]
    assert len(folder(server, ALICE)) == 1
    alone = send(server, files["big.bin"])
    assert alone.returncode == 0, alone.stdout[-2000:]
    assert [partly(m) for m in folder(server, ALICE)] == [[said], []]  # scanned whole: no X-Virus-Status


@pytest.fixture
def strict_clamd() -> Iterator[Clamd]:
    """A clamd whose MaxFileSize (1 MiB) is below the message: it answers Heuristics.Limits.Exceeded."""
    with running_clamd(max_file=MIB) as found:
        yield found


def test_a_message_past_clamds_own_limit_is_delivered_saying_so(
    jitaku_factory: Any, strict_clamd: Clamd, files: dict[str, Path], tmp_path: Path
) -> None:
    server = start(jitaku_factory, strict_clamd.address)
    two = tmp_path / "two.bin"
    two.write_bytes(bytes(range(256)) * (2 * MIB // 256))
    sent = send(server, two)
    assert sent.returncode == 0, sent.stdout  # not a virus: a scan clamd did not finish
    (stored,) = folder(server, ALICE)
    assert partly(stored) == [b"not scanned whole (Heuristics.Limits.Exceeded.MaxFileSize)"]
    assert "filter_partial" in server.log()
    refused = send(server, files["pattern.txt"])  # within its limits, clamd still finds what it knows
    assert rejection(refused.stdout).startswith("554 5.7.1"), refused.stdout
