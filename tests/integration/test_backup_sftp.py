"""`jitaku backup` to an SFTP server (issue 26): Debian's sshd, started here on a loopback address with a config,
host key and authorized key of its own; jitaku given its own ssh key and known_hosts file ([backup] ssh_key,
ssh_known_hosts). A backup goes there and comes back; a server killed mid-upload is one line, lists nothing, and
the next backup succeeds; a backup killed with -9 leaves ssh's log, which the next run clears."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import JITAKU, READER, Jitaku
from tests.peers import free_port, wait_for_port, wait_until
from tests.postgres import on_postgresql

SSHD = "/usr/sbin/sshd"  # Debian's openssh-server; sshd re-executes itself, so by its absolute path
HOST = "127.0.12.12"
SNAPSHOT = "snapshot "  # `backup now` says "snapshot ID: ..."


class Sshd:
    """An sshd of the test's own, in the foreground, that lets root in with the one key in AUTHORIZED."""

    def __init__(self, place: Path) -> None:
        self.place = place
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        place.mkdir()
        _keygen(place / "host_key")
        (place / "authorized_keys").touch()
        (place / "sshd_config").write_text(
            f"ListenAddress {HOST}\nPort {self.port}\nHostKey {place / 'host_key'}\n"
            f"AuthorizedKeysFile {place / 'authorized_keys'}\nPidFile {place / 'sshd.pid'}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
            "Subsystem sftp internal-sftp\nStrictModes no\nUsePAM no\n"
        )

    @property
    def known_host(self) -> str:
        """The line of a known_hosts file that names this server's host key."""
        kind, key = (self.place / "host_key.pub").read_text().split()[:2]
        return f"[{HOST}]:{self.port} {kind} {key}\n"

    def start(self) -> None:
        """The server, listening; or nothing left running (a root sshd outliving pytest) when it does not."""
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # its privilege separation directory (systemd's, else)
        log = open(self.place / "sshd.log", "ab")  # noqa: SIM115 - the server's, for as long as it runs
        with log:
            self.process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.place / "sshd_config")], stderr=log)
        try:
            wait_for_port(self.port, timeout=30, host=HOST)
        except BaseException:
            self.kill()
            raise

    def kill(self) -> None:
        """The server and every session it runs, with SIGKILL: a box that loses its power or its link."""
        assert self.process is not None
        for pid in [self.process.pid, *_descendants(self.process.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()
        self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.kill()


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    if os.geteuid() != 0 or not os.path.exists(SSHD):
        pytest.skip("the SFTP tests run Debian's sshd (openssh-server) as root")
    server = Sshd(tmp_path / "sshd")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def box(jitaku_factory: Any, tmp_path: Path, sshd: Sshd) -> Jitaku:
    """A jitaku whose [backup] target is a directory on SSHD, reached with a key and known_hosts of its own."""
    if on_postgresql():
        pytest.skip("backup on PostgreSQL comes later (issue 26)")
    server: Jitaku = jitaku_factory()
    server.init(READER)
    (server.dir / "ssh").mkdir(mode=0o700)
    _keygen(server.dir / "ssh" / "id_ed25519")
    shutil.copy(server.dir / "ssh" / "id_ed25519.pub", sshd.place / "authorized_keys")
    (server.dir / "ssh" / "known_hosts").write_text(sshd.known_host)
    server.settings["backup"] = {
        "target": f"sftp://root@{HOST}:{sshd.port}/{tmp_path}/repo",
        "ssh_key": "ssh/id_ed25519",
        "ssh_known_hosts": "ssh/known_hosts",
        "every": 0,  # each backup taken by hand
    }
    server.write_config()
    made = server.cli("backup", "init")  # no --same-disk: the repository is on another machine, as far as we know
    assert "without it the backups cannot be read" in made.stdout
    assert (tmp_path / "repo" / "config").is_file()
    return server


def test_a_backup_goes_to_the_sftp_server_and_comes_back(box: Jitaku, tmp_path: Path) -> None:
    (box.dir / "media").mkdir()
    (box.dir / "media" / "photo.jpg").write_bytes(os.urandom(1 << 20))
    snapshot = box.cli("backup", "now").stdout.split(":")[0].removeprefix(SNAPSHOT)
    assert [item["id"] for item in json.loads(box.cli("backup", "list", "--json").stdout)] == [snapshot]
    assert list((tmp_path / "repo" / "snapshots").iterdir())  # on the server's disk, not anywhere of ours

    restored = tmp_path / "restored"
    box.cli("backup", "restore", snapshot, "--to", str(restored))
    assert (restored / "media" / "photo.jpg").read_bytes() == (box.dir / "media" / "photo.jpg").read_bytes()
    assert (restored / "jitaku.db").is_file() and (restored / "ssh" / "id_ed25519").is_file()
    assert f"snapshot {snapshot} verified" in box.cli("backup", "verify").stdout


def test_an_sftp_server_killed_mid_upload_is_one_line_lists_nothing_and_the_next_backup_succeeds(
    box: Jitaku, tmp_path: Path, sshd: Sshd
) -> None:
    (box.dir / "media").mkdir()
    (box.dir / "media" / "video.mp4").write_bytes(os.urandom(32 << 20))  # a file the upload takes a moment over
    packs = tmp_path / "repo" / "data"
    written = _files(packs)
    running = subprocess.Popen(
        [*JITAKU, "backup", "now", "--dir", str(box.dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_until(lambda: len(_files(packs)) > len(written) or running.poll() is not None, timeout=60, interval=0.02)
        sshd.kill()
        stdout, stderr = running.communicate(timeout=120)
    finally:
        running.kill()  # nothing of a failed test's left running
        running.wait()
    assert running.returncode == 1 and stdout == "", "the backup ended before the server went: this proves nothing"
    assert stderr == (
        f"jitaku: the SFTP connection to sftp://root@{HOST}:{sshd.port}/{tmp_path}/repo was lost during restic"
        " backup: nothing half-done is listed; try again when the server is back\n"
    )

    sshd.start()
    assert len(_files(packs)) > len(written)  # part of it was sent
    taken = box.cli("backup", "now").stdout.split(":")[0].removeprefix(SNAPSHOT)
    assert [item["id"] for item in json.loads(box.cli("backup", "list", "--json").stdout)] == [taken]
    # and it passes the drill, whose restic check is refused over a lock unless the dead backup's is cleared
    assert f"snapshot {taken} verified" in box.cli("backup", "verify").stdout


def test_a_host_key_not_the_known_one_or_a_key_the_server_refuses_is_ssh_s_own_line(
    box: Jitaku, sshd: Sshd, tmp_path: Path
) -> None:
    shown = f"jitaku: cannot open an SFTP session to sftp://root@{HOST}:{sshd.port}/{tmp_path}/repo: "
    known = (box.dir / "ssh" / "known_hosts").read_text()
    (box.dir / "ssh" / "known_hosts").write_text(known.replace(known.split()[2], _other_key()))
    refused = box.cli("backup", "list", check=False)
    assert (refused.returncode, refused.stderr) == (1, shown + "Host key verification failed.\n")

    (box.dir / "ssh" / "known_hosts").write_text(known)
    (sshd.place / "authorized_keys").write_text(f"ssh-ed25519 {_other_key()}\n")
    refused = box.cli("backup", "now", check=False)
    assert (refused.returncode, refused.stderr) == (1, shown + f"root@{HOST}: Permission denied (publickey).\n")
    assert not list((box.dir / "backup").glob("ssh.*.log"))  # ssh's messages read, and their file gone


def test_the_ssh_log_of_a_backup_killed_with_9_is_cleared_by_the_next_run(box: Jitaku, tmp_path: Path) -> None:
    (box.dir / "media").mkdir()
    (box.dir / "media" / "video.mp4").write_bytes(os.urandom(32 << 20))
    packs = tmp_path / "repo" / "data"
    written = _files(packs)
    quiet = subprocess.DEVNULL
    running = subprocess.Popen([*JITAKU, "backup", "now", "--dir", str(box.dir)], stdout=quiet, stderr=quiet)
    try:
        wait_until(lambda: len(_files(packs)) > len(written) or running.poll() is not None, timeout=60, interval=0.02)
    finally:
        running.send_signal(signal.SIGKILL)
        running.wait()
    assert running.returncode == -signal.SIGKILL, "the backup ended before it was killed: this test proves nothing"
    assert list((box.dir / "backup").glob(f"ssh.{running.pid}.*.log"))  # ssh's, which nobody removed

    assert json.loads(box.cli("backup", "list", "--json").stdout) == []  # a run of its own, without the lock
    assert not list((box.dir / "backup").glob("ssh.*.log"))


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, timeout=30)


def _other_key() -> str:
    """The public half of an ed25519 key nobody serves."""
    made = subprocess.run(
        [
            "sh",
            "-c",
            'd=$(mktemp -d) && ssh-keygen -q -t ed25519 -N "" -f "$d/k" && cut -d" " -f2 "$d/k.pub"; rm -rf "$d"',
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return made.stdout.strip()


def _files(directory: Path) -> set[Path]:
    return {path for path in directory.rglob("*") if path.is_file()}


def _descendants(pid: int) -> list[int]:
    """Every process below PID: sshd's sessions (each in a session of its own, so no process group holds them)."""
    found: list[int] = []
    try:
        children = [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return found
    for child in children:
        found += [child, *_descendants(child)]
    return found
