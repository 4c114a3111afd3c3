"""Off-box targets: what restic needs beyond RESTIC_REPOSITORY to reach an SFTP server or an S3-compatible store.

SFTP: restic runs `ssh` itself, and jitaku gives it the whole ssh command line (restic's `-o sftp.command=...`):
BatchMode (the daemon has no terminal for a prompt to wait on for ever), a connect timeout (a server that takes
the connection and never answers ends in half a minute) and keepalives (a link that died quietly ends within a
minute rather than at the six-hour deadline), and, when `[backup] ssh_key` or `ssh_known_hosts` is set, that key
and known_hosts file; without them, ssh's own config and defaults. restic 0.14 splits that string into words
itself (at spaces, minding quotes and backslashes), so a path with any of those in it is refused here rather than
cut or unquoted there.

S3: the keys are read from `[backup] credentials_file`, a 0600 file of KEY=VALUE lines, into restic's environment
only: never its command line (which `ps` shows everyone), never a log or a sentence.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from jitaku import files
from jitaku.errors import BackupError
from jitaku.sftp_target import UNSPLITTABLE, parse_sftp

# what a credentials file may set: restic's S3 backend reads these from its environment
CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN")
REQUIRED = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
SECRET = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")  # kept out of every sentence
UNPASSABLE = "has a space, quote or backslash in it, which restic's sftp.command cannot pass to ssh"
# a server that takes the connection but never answers (hung, at MaxStartups, a tarpit) ends in half a minute,
# a link that dies later in about a minute
KEEPALIVE = ("-o", "ConnectTimeout=30", "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4")
QUOTES = ("'", '"')  # around a credentials file's value
KEY_NAME = re.compile(r"[A-Z_]{1,40}")  # a line's key that may be named in a sentence: no secret looks like it
LOG_NAME = re.compile(r"ssh\.(\d+)\.\d+\.log")  # ssh_log_file's names


@dataclass(frozen=True)
class Access:
    """What one restic run needs to reach its target: an ssh command, environment entries, the secrets among them
    that no sentence may carry, and the file they came from, which a refusal names."""

    ssh: str = ""  # an sftp target's ssh command line (sftp_command), "" for any other target
    environment: dict[str, str] = field(default_factory=dict, repr=False)  # never in a traceback's locals
    secrets: tuple[str, ...] = field(default=(), repr=False)
    source: str = ""

    def options(self, ssh_log: Path | None) -> tuple[str, ...]:
        """restic's options for one run: the ssh command, its messages appended to SSH_LOG (ssh -E). restic passes
        on ssh's stderr only while it runs, and may end first: the file keeps "Host key verification failed".
        An SSH_LOG restic's split would cut (a data directory with a space), or none (a run without a data
        directory), is left out: ssh's stderr is all then."""
        if not self.ssh:
            return ()
        if ssh_log is None or unsplittable(str(ssh_log)):
            return ("-o", f"sftp.command={self.ssh}")
        program, _, rest = self.ssh.partition(" ")
        return ("-o", f"sftp.command={program} -E {ssh_log} {rest}")


def sftp_command(target: str, key: Path | None, known_hosts: Path | None) -> str:
    """The ssh command line restic runs for TARGET (its sftp.command), with KEY and KNOWN_HOSTS when given."""
    where = parse_sftp(target)
    words = ["ssh"]
    if where.port is not None:
        words += ["-p", str(where.port)]
    if key is not None:
        words += ["-i", str(key), "-o", "IdentitiesOnly=yes"]
    if known_hosts is not None:
        words += ["-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes"]
    words += ["-o", "BatchMode=yes", *KEEPALIVE]
    return " ".join([*words, where.login, "-s", "sftp"])


def unsplittable(value: str) -> bool:
    """True when VALUE, a path, would not survive restic's split of sftp.command on spaces and quotes."""
    return bool(UNSPLITTABLE.search(value))


def ssh_log_file(directory: Path) -> Path:
    """The file in DIRECTORY for the messages of the ssh of one restic run, this thread's (restic may run in
    several threads of one daemon at once)."""
    return directory / f"ssh.{os.getpid()}.{threading.get_ident()}.log"


def clear_left_logs(directory: Path) -> None:
    """The ssh logs in DIRECTORY of processes that are gone (a `backup now` killed with -9, a power cut), which
    no run removes: a run removes its own, and a live one's (`backup list` takes no lock) is left alone."""
    for path in directory.glob("ssh.*.log"):
        named = LOG_NAME.fullmatch(path.name)
        if named is None or int(named.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(named.group(1)), 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
        except OSError:  # alive, someone else's
            pass


def private(path: Path, key: str) -> None:
    """BackupError unless PATH, named by [backup] KEY, is a file nobody else may read."""
    after = " (ssh refuses such a key anyway)" if key == "ssh_key" else ""
    files.check_private(path, BackupError, f" ([backup] {key})", after)


def credentials(path: Path) -> dict[str, str]:
    """The KEY=VALUE lines of the credentials file PATH ([backup] credentials_file), which must be 0600 and set
    the access key id and secret. BackupError naming the file and line otherwise, never a value."""
    private(path, "credentials_file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise BackupError(f"cannot read {path} ([backup] credentials_file): {error}") from None
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, equals, value = line.partition("=")
        name, value = name.strip().removeprefix("export ").strip(), value.strip()
        if not equals or not KEY_NAME.fullmatch(name):  # a wrapped token's tail, `KEY: secret=`: no word of it
            raise BackupError(f"{path}:{number}: expected KEY=VALUE, KEY one of {', '.join(CREDENTIALS)}")
        if name not in CREDENTIALS:
            raise BackupError(f"{path}:{number}: unknown key {name!r}: expected one of {', '.join(CREDENTIALS)}")
        value = _value(path, number, name, value)
        if not value:
            raise BackupError(f"{path}:{number}: {name} has no value")
        if name in found:
            raise BackupError(f"{path}:{number}: {name} is set twice")
        found[name] = value
    missing = [name for name in REQUIRED if name not in found]
    if missing:
        raise BackupError(f"{path}: {' and '.join(missing)} missing: an S3 store needs both keys")
    return found


def _value(path: Path, number: int, name: str, value: str) -> str:
    """VALUE, the text after NAME= on line NUMBER, unquoted; BackupError for what a shell would read otherwise
    than this file is read (restic's store would then refuse a key that looks right, and the sentence blame it)."""
    if value.endswith("\\"):
        raise BackupError(f"{path}:{number}: {name} ends in a backslash: put the whole value on its one line")
    if len(value) >= 2 and value[0] == value[-1] and value[0] in QUOTES:
        return value[1:-1]
    if re.search(r"\s#", value):
        raise BackupError(f"{path}:{number}: {name} has a comment after its value: put it on a line of its own")
    if value[:1] in QUOTES or value[-1:] in QUOTES:
        raise BackupError(f"{path}:{number}: {name} has a quote at one end only: quote all of its value or none")
    return value


def access(target: str, data_dir: Path, ssh_key: str, ssh_known_hosts: str, credentials_file: str) -> Access:
    """What restic needs to reach TARGET beyond its repository and password, from the [backup] keys (each a path
    relative to DATA_DIR, "" for none). BackupError with a sentence naming the key when one cannot be used."""
    if target.startswith("sftp:"):
        here = os.path.abspath(data_dir)
        if unsplittable(here) and (ssh_key or ssh_known_hosts):  # they are below it (ssh's log is left out)
            raise BackupError(f"[backup] ssh_key, ssh_known_hosts: {here} {UNPASSABLE}: move the data directory")
        key = _place(data_dir, ssh_key)
        known_hosts = _place(data_dir, ssh_known_hosts)
        if key is not None:
            private(key, "ssh_key")
        if known_hosts is not None and not known_hosts.is_file():
            raise BackupError(f"no known_hosts file at {known_hosts} ([backup] ssh_known_hosts)")
        try:
            return Access(ssh=sftp_command(target, key, known_hosts))
        except ValueError as error:
            raise BackupError(f"[backup] target: {error}") from None
    if target.startswith("s3:") and credentials_file:
        path = _place(data_dir, credentials_file)
        assert path is not None
        found = credentials(path)
        secrets = tuple(found[name] for name in SECRET if name in found)
        return Access(environment=found, secrets=secrets, source=str(path))
    return Access()


def _place(data_dir: Path, value: str) -> Path | None:
    """A [backup] key's file, VALUE relative to DATA_DIR, as an absolute path (restic runs elsewhere); None for
    "". The config refuses a VALUE with a space or quote, and access() such a DATA_DIR, for sftp.command."""
    return Path(os.path.abspath(data_dir / value)) if value else None
