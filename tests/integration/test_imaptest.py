"""Dovecot's IMAP conformance tool, imaptest, against jitaku and against Dovecot in the same run: its scripted
test groups (each a sequence of commands and the replies RFC 3501 and its extensions allow), and its stress
mode (ten clients of one user appending, fetching, storing flags, searching and expunging at once, checking
every reply against the state it tracks). jitaku must pass every group Dovecot passes, and print in stress
mode no kind of error that Dovecot does not print too.

imaptest is on no package registry: scripts/build-imaptest builds it from a clone of its source into
/usr/local/lib/imaptest (or $IMAPTEST_DIR); without it these tests are skipped."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import READER, Jitaku
from tests.peers import Dovecot

HOME = Path(os.environ.get("IMAPTEST_DIR", "/usr/local/lib/imaptest"))
PASSWORD = "secret-password"
STRESS_SECONDS = 20


def imaptest(port: int, user: str, *args: str, timeout: float = 300) -> str:
    """imaptest's output (errors and summary) for one run against PORT as USER."""
    result = subprocess.run(
        [str(HOME / "imaptest"), "host=127.0.0.1", f"port={port}", f"user={user}", f"pass={PASSWORD}", *args],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        env={**os.environ, "LD_LIBRARY_PATH": "/usr/lib/dovecot"},
    )
    return result.stdout + result.stderr


def failed_groups(output: str) -> set[str]:
    """The scripted groups with a failed command: each failure starts "*** Test GROUP command N/M"."""
    return set(re.findall(r"^\*\*\* Test (\S+) command", output, re.MULTILINE))


def error_kinds(output: str) -> set[str]:
    """Stress mode's error lines, with the client, numbers and quoted data taken out: the kinds of error."""
    kinds = set()
    for line in output.splitlines():
        if line.startswith(("Error:", "Panic:", "Fatal:")):
            line = re.sub(r"\[\d+\]", "", line)
            line = re.sub(r"\d+", "N", line)
            kinds.add(line.split(": * ")[0][:160])
    return kinds


def totals(output: str) -> dict[str, int]:
    """Stress mode's closing count of each command done ("Logi 2556, Sele 2554, ..."): the last lines of numbers
    under "Totals:"."""
    found = re.search(r"^Totals:\n(.*)\n(?:.*\n)*?([\d ]+)$", output, re.MULTILINE)
    if found is None:
        return {}
    return dict(zip(found.group(1).split(), (int(n) for n in found.group(2).split()), strict=False))


@pytest.fixture(scope="module")
def tool() -> Path:
    if not (HOME / "imaptest").exists():
        pytest.skip(f"imaptest is not built: scripts/build-imaptest SRC_DIR installs it in {HOME}")
    if os.geteuid() != 0:
        pytest.skip("Dovecot runs its mail processes as nobody, which needs root (CI runs as root)")
    return HOME


@pytest.fixture
def reference(tool: Path) -> Iterator[Dovecot]:
    """A Dovecot of its own for each test: the stress test leaves hundreds of messages behind."""
    server = Dovecot()
    yield server
    server.close()


def test_every_scripted_group_dovecot_passes_jitaku_passes(tool: Path, mailhost: Jitaku, reference: Dovecot) -> None:
    ours = imaptest(mailhost.imap_port, READER, f"test={tool / 'tests'}")
    theirs = imaptest(reference.port, "alice", f"test={tool / 'tests'}")
    summary = re.search(r"(\d+) test groups: (\d+) failed", ours)
    assert summary is not None, ours[-2000:]
    print(f"imaptest scripted groups: jitaku {summary.group(0)}; Dovecot {failed_groups(theirs) or 'none failed'}")
    assert int(summary.group(1)) >= 60  # every group ran, none skipped for a missing capability
    assert failed_groups(ours) <= failed_groups(theirs), ours[-6000:]
    assert error_kinds(ours) <= error_kinds(theirs), ours[-6000:]  # what it checks beyond each group's script


@pytest.mark.parametrize("logouts", [True, False], ids=["with-logouts", "without-logouts"])
def test_ten_clients_of_one_user_at_once_see_no_error_dovecot_does_not(
    tool: Path, mailhost: Jitaku, reference: Dovecot, logouts: bool
) -> None:
    args = ["clients=10", f"secs={STRESS_SECONDS}", f"mbox={tool / 'tests' / 'default.mbox'}"]
    if not logouts:
        args.append("logout=0")
    ours = imaptest(mailhost.imap_port, READER, *args)
    theirs = imaptest(reference.port, "alice", *args)
    print(
        f"imaptest stress {'with' if logouts else 'without'} logouts: jitaku {totals(ours)}, Dovecot {totals(theirs)}"
    )
    assert sum(totals(ours).values()) > 0, ours[-3000:]  # it ran to the end and counted commands
    extra = error_kinds(ours) - error_kinds(theirs)
    assert not extra, "\n".join(sorted(extra)) + "\n" + ours[-3000:]
