"""restic, run as a child process: jitaku writes no backup format of its own, so restic alone (any machine, any
later version) can read the backups back.

restic is run with an argument list, never a shell, its repository and password file given in its environment
(RESTIC_REPOSITORY, RESTIC_PASSWORD_FILE), an S3 store's keys too, and nothing else of ours on its command line
but an sftp target's ssh command, which holds paths alone (jitaku.backup.targets). What it prints is read
bounded (MAX_OUTPUT bytes, its --json lines parsed one at a time), it has a deadline (backup/child.py), and it dies
with us: a `jitaku backup now` killed with -9 leaves no restic running on to write a snapshot nobody asked for any
more.
Its failures become one sentence (BackupError) that says what to do, never its own multi-line text.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from jitaku import log
from jitaku.backup import child
from jitaku.backup.targets import Access, access, clear_left_logs, ssh_log_file
from jitaku.config import Config
from jitaku.errors import BackupError
from jitaku.words import counted

PROGRAM = "restic"
MAX_OUTPUT = 8 << 20  # bytes of stdout read from one run at most: `snapshots --json` is one line for all of them
QUICK = 300.0  # seconds for a command that reads only the repository's small files (init, snapshots)
LONG = 6 * 3600.0  # for one that moves the data (backup, restore, check)
UNREAD = "ignoring error for "  # how restic restore begins the line of a file it could not read back
PROGRESS_PER_SECOND = 1  # restic's --json status lines: 60 a second unless told
# restic's prefixes of a repository that is not a local path; a path is relative to the data dir
BACKENDS = ("local:", "sftp:", "rest:", "s3:", "b2:", "azure:", "gs:", "swift:", "rclone:")
CACHE = "backup/cache"  # in the data dir: restic's cache of the repository's index, not in a home the daemon lacks
# restic's own environment that would override or confuse ours: the repository and password are given here alone
THEIRS = ("RESTIC_PASSWORD", "RESTIC_PASSWORD_COMMAND", "RESTIC_REPOSITORY_FILE", "RESTIC_KEY_HINT")


Progress = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Output:
    """One run's stdout: its JSON documents, in order, and its other lines (restic 0.14's init prints text)."""

    documents: list[Any]
    text: list[str]


class NoRepository(BackupError):
    """No restic repository at the target: `jitaku backup init` makes one."""


class Busy(BackupError):
    """Busy now, try later, which says nothing of the snapshots: another backup or verify of this data directory
    runs (snapshot.running's lock), or another restic holds the repository's lock."""


class StaleLock(Busy):
    """Refused over the lock of a restic on this host that is gone (killed with -9): `restic unlock` removes it,
    and the run is tried again. Busy still, when it is refused a second time."""


# how an S3 store says it will not take the keys, and what to do about it; restic says it in the store's words
REFUSED = {
    "signature we calculated does not match": "wrong AWS_SECRET_ACCESS_KEY?",
    "signaturedoesnotmatch": "wrong AWS_SECRET_ACCESS_KEY?",
    "access key id you provided does not exist": "no such AWS_ACCESS_KEY_ID",
    "invalidaccesskeyid": "no such AWS_ACCESS_KEY_ID",
    "security token included in the request is invalid": "expired or wrong AWS_SESSION_TOKEN?",
    "expiredtoken": "expired AWS_SESSION_TOKEN",
    "access denied": "the key may not use this bucket",
}
AWS = "AWS_"  # the environment's S3 settings, which a credentials file replaces whole
# restic's words for an sftp connection that ended under it (ssh or the server gone), for one that never began,
# and the prefix of ssh's own lines in what it says
SSH_GONE = ("connection lost", "ssh command exited")
NO_SESSION = "unable to start the sftp session"
SSH = "subprocess ssh: "
NO_WORD = (
    "ssh ended before it began one: is the server up, its host key the one in [backup] ssh_known_hosts, and"
    " [backup] ssh_key in its authorized_keys?"
)

# how restic says the repository's config file is not there, for a local path, sftp and the object stores; any
# other failure to read it (a permission, a network, an unmounted disk's mount point) is no reason to make one
MISSING = ("no such file or directory", "not exist", "404")
FULL = "no space left on device"  # ENOSPC, as Go says it
# Go's "OP PATH: no space left on device" (os.PathError): the path runs to the colon of the error, spaces and all
WRITTEN = re.compile(rf".*\b(?:write|open|mkdir|sync|close|rename|create|truncate)\s+(/.+?): {FULL}", re.IGNORECASE)
# restic 0.14's refusal over a lock ("repository is already locked exclusively by PID 12 on box by root ...")
HELD = re.compile(r"already locked (?:exclusively )?by PID (\d{1,9}) on (\S+)")


class Restic:
    """The repository TARGET opened with the password in PASSWORD_FILE, restic's cache in CACHE (None: none)."""

    def __init__(self, target: str, password_file: Path, cache: Path | None, reach: Access | None = None) -> None:
        self.target = target
        self.password_file = password_file
        self.cache = cache
        self.reach = reach or Access()  # an off-box target's ssh command or keys (jitaku.backup.targets)

    @property
    def shown(self) -> str:
        """The target as sentences and logs name it: without a password in it."""
        return redacted(self.target)

    @classmethod
    def of(cls, config: Config) -> Restic:
        settings = config.settings.backup
        if not settings.enabled:
            raise BackupError(
                f"backups are off: set [backup] target in {config.data_dir / 'jitaku.toml'} (a restic repository:"
                " a path, sftp:..., s3:...)"
            )
        # absolute: restic runs in a staging directory, and the daemon's working directory is not the CLI's
        here = Path(os.path.abspath(config.data_dir))
        target = settings.target if settings.target.startswith(BACKENDS) else os.path.abspath(here / settings.target)
        if Path(target).is_relative_to(here):
            raise BackupError(
                f"the backup target {target} is inside the data directory {here}: a backup would hold itself, and"
                " go with this disk; name a directory on another disk, or sftp:..., s3:..."
            )
        reach = access(target, here, settings.ssh_key, settings.ssh_known_hosts, settings.credentials_file)
        return cls(target, here / settings.password_file, here / CACHE, reach)

    def run(
        self, *args: str, cwd: Path | None = None, timeout: float = QUICK, progress: Progress | None = None
    ) -> Output:
        """`restic ARGS` (its own options included); its output, or BackupError with one sentence. PROGRESS is
        given each of restic's --json status lines (a backup's), which are not kept.

        A run refused over the lock of a restic of this host that is gone (StaleLock) is tried once more after
        `restic unlock`: the exclusive lock of a check or prune killed with -9 (a daemon stopped during its drill)
        would otherwise refuse every backup after it, each one Busy, which the schedule takes for another run
        going on and records nothing of. Any other lock is Busy: one of another box, whatever its age by our
        clock, may be a prune going on, which a backup beside it would lose data to."""
        try:
            return self._run(args, cwd, timeout, progress)
        except StaleLock:
            self._run(("unlock",), None, QUICK, None)
            log.event("restic_retried_after_unlock", command=args[0])
            return self._run(args, cwd, timeout, progress)

    def _run(self, args: tuple[str, ...], cwd: Path | None, timeout: float, progress: Progress | None) -> Output:
        environment = {key: value for key, value in os.environ.items() if key not in THEIRS}
        if self.reach.environment:  # a credentials file's keys alone: none of ours mixed in (a stale token)
            environment = {key: value for key, value in environment.items() if not key.startswith(AWS)}
        environment.update(self.reach.environment)
        environment.update(
            RESTIC_REPOSITORY=self.target,
            RESTIC_PASSWORD_FILE=str(self.password_file),
            RESTIC_PROGRESS_FPS=str(PROGRESS_PER_SECOND),
        )
        if self.cache is not None:
            environment["RESTIC_CACHE_DIR"] = str(self.cache)
        options = [] if self.cache is not None else ["--no-cache"]
        ssh_log = ssh_log_file(self.cache.parent) if self.reach.ssh and self.cache is not None else None
        if ssh_log is not None:  # ssh's messages, in a file of this run's own
            ssh_log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            clear_left_logs(ssh_log.parent)
        found: list[Output] = []

        def read(stream: IO[bytes]) -> bool:
            output, overflow = _read(stream, progress)
            found.append(output)
            return overflow

        command = [PROGRAM, *self.reach.options(ssh_log), args[0], *options, *args[1:]]
        try:
            ended = child.run(command, environment, timeout, cwd, read)
        except FileNotFoundError:
            raise BackupError("restic is not installed: `apt install restic` (Debian), or put it on PATH") from None
        except child.Stopped as stopped:
            raise BackupError(f"restic {args[0]} was not started: the daemon stops") from stopped
        finally:
            ssh_said = _ssh_said(ssh_log) if ssh_log is not None else ""
        output = found[0] if found else Output([], [])
        if ended.expired:
            raise BackupError(f"restic {args[0]} did not finish within {timeout:.0f} s, and was stopped")
        if ended.cut:
            raise BackupError(f"restic {args[0]} printed more than {MAX_OUTPUT >> 20} MB: stopped")
        if ended.code != 0:
            failure = self.failure(args[0], ended.stderr + ssh_said)
            log.event("restic_failed", command=args[0], code=ended.code, error=redacted(str(failure)))
            raise failure
        return output

    def failure(self, command: str, said: str) -> BackupError:
        """What restic's stderr SAID comes to, as one sentence naming the repository (its password, if it has one
        in it, left out) and what to do."""
        sentence = self._failure(command, self._hidden(said))
        return type(sentence)(self._hidden(str(sentence)))

    def _hidden(self, text: str) -> str:
        """TEXT without any password in a URL, and without the values of the credentials file."""
        text = redacted(text)
        for secret in self.reach.secrets:
            text = text.replace(secret, "***")
        return text

    def _failure(self, command: str, said: str) -> BackupError:
        lowered = said.lower()
        target = self.shown
        if "wrong password" in lowered:
            return BackupError(f"restic cannot open the repository {target} with {self.password_file}: wrong password?")
        if "resolving password failed" in lowered:
            return BackupError(
                f"no restic password file at {self.password_file}: put back your copy of it, or for a new repository"
                " run `jitaku backup init`"
            )
        lines = [line.strip() for line in said.splitlines() if line.strip()]
        fatal = [line.removeprefix("Fatal: ") for line in lines if line.startswith("Fatal: ")]
        refusal = next((words for words in REFUSED if words in lowered), None)
        if refusal is not None and self.target.startswith("s3:"):  # before the missing config file below:
            # "The AWS Access Key Id you provided does not exist" is no missing repository
            keys = self.reach.source or "the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"
            return BackupError(f"the store at {target} refused the credentials in {keys}: {REFUSED[refusal]}")
        if self.target.startswith("sftp:"):
            ssh = [line.removeprefix(SSH).removeprefix("ssh: ") for line in lines if line.startswith(SSH)]
            if NO_SESSION in lowered:
                # restic may end before it has passed on what ssh said: then what to look at
                why = ssh[-1] if ssh else NO_WORD
                return BackupError(f"cannot open an SFTP session to {target}: {why}")
            if any(words in lowered for words in SSH_GONE):
                return BackupError(
                    f"the SFTP connection to {target} was lost during restic {command}: nothing half-done is listed;"
                    " try again when the server is back"
                )
        if "unable to open config file" in lowered or "is there a repository at" in lowered:
            opening = next((line for line in fatal if "config file" in line), fatal[-1] if fatal else lowered)
            if any(word in opening.lower() for word in MISSING):
                return NoRepository(f"no restic repository at {target}: run `jitaku backup init`")
            return BackupError(f"cannot reach the restic repository at {target}: {opening}")
        unknown = re.search(r'invalid id "([^"]*)": no matching id found', said, re.IGNORECASE)
        if unknown:
            return BackupError(f"{unknown.group(1)} is no snapshot in {target}: `jitaku backup list` shows them")
        full = next((line for line in lines if FULL in line.lower()), None)
        if full is not None:
            return self._full(command, full)
        if "already locked" in lowered:
            return (StaleLock if _gone_here(said) else Busy)(
                f"the repository {target} is locked by another restic (a backup or check running now, here or on"
                " another box): try again when it ends"
            )
        # restore goes on past a file it cannot read back (a damaged pack) and fails at the end: name the file
        unread = [line.removeprefix(UNREAD).partition(": ") for line in lines if line.startswith(UNREAD)]
        if unread:
            path, _, why = unread[0]
            more = f" (and {counted(len(unread) - 1, 'more file')})" if len(unread) > 1 else ""
            return BackupError(f"restic {command} could not read {path}{more} back from {target}: {why}")
        last = (fatal or lines or ["no reason given"])[-1]
        return BackupError(f"restic {command} failed on {target}: {last}")

    def _full(self, command: str, said: str) -> BackupError:
        """A full disk, which restic SAID in a line that names the file it could not write (Go's "write PATH: no
        space left on device"): the target's, unless that file is elsewhere on this box."""
        written = WRITTEN.match(said)
        if written is not None and self._elsewhere(command, Path(written.group(1))):
            return BackupError(
                f"restic {command} could not write {written.group(1)}: its disk is full (no space left on device);"
                " free space there"
            )
        kept = ", and no snapshot was made" if command == "backup" else ""
        return BackupError(
            f"the backup target {self.shown} is full (no space left on device){kept}: free space on it, or point"
            " [backup] target at a disk with room"
        )

    def _elsewhere(self, command: str, path: Path) -> bool:
        """Whether PATH, a file restic wrote, is on this box and not in the repository: restic's cache (in the
        data directory), its packs' buffers (TMPDIR), a restore's files; or, the target being a local path,
        anywhere outside it. A remote target's own paths are the remote's. TMPDIR is Go's os.TempDir(), which
        restic's buffers go to, read without writing to it: the disk may be the full one."""
        local = self.target.removeprefix("local:")
        if local.startswith("/"):
            return not path.is_relative_to(local)
        buffers = os.environ.get("TMPDIR") or "/tmp"  # what _run passes on to restic
        places: list[str | Path] = [buffers, *([self.cache] if self.cache is not None else [])]
        return command == "restore" or any(path.is_relative_to(place) for place in places)


def redacted(text: str) -> str:
    """TEXT with the password of any URL in it (rest:https://user:password@host/...) replaced by ***: a target
    may carry one, and sentences and logs are read by more people than the configuration."""
    return re.sub(r"(://[^/\s:@]*:)[^/\s@]*@", r"\1***@", text)


def _ssh_said(path: Path) -> str:
    """What ssh wrote to PATH (its -E log), the last STDERR_KEPT bytes, as restic passes ssh's lines on; PATH
    removed."""
    try:
        with open(path, "rb") as file:
            file.seek(max(0, os.fstat(file.fileno()).st_size - child.STDERR_KEPT))
            kept = file.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    finally:
        path.unlink(missing_ok=True)
    return "".join(f"{SSH}{line}\n" for line in kept.splitlines() if line.strip())


def _gone_here(said: str) -> bool:
    """Whether the lock restic SAID it was refused over is one of a restic on this host (the hostname as Go's
    os.Hostname() gives it) whose PID is not alive here: one killed with -9, which `restic unlock` removes."""
    held = HELD.search(said)
    if held is None or held.group(2) != socket.gethostname():
        return False
    try:
        os.kill(int(held.group(1)), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _read(stream: Any, progress: Progress | None) -> tuple[Output, bool]:
    """STREAM's lines, JSON ones parsed, until its end or MAX_OUTPUT bytes kept (then True: the rest unread).
    Status lines go to PROGRESS and are dropped: restic prints them all along a backup of any length."""
    documents: list[Any] = []
    text: list[str] = []
    total = 0
    while True:
        line = stream.readline(MAX_OUTPUT - total + 1)
        if not line:
            return Output(documents, text), False
        document = _document(line.strip())
        if isinstance(document, dict) and document.get("message_type") == "status":
            if progress is not None:
                progress(document)
            continue
        total += len(line)
        if total > MAX_OUTPUT:
            return Output(documents, text), True
        if document is not None:
            documents.append(document)
        elif line.strip():
            text.append(line.strip().decode(errors="replace"))


def _document(line: bytes) -> Any:
    """LINE parsed, when it is JSON; None otherwise."""
    if line[:1] not in (b"{", b"["):
        return None
    try:
        return json.loads(line)
    except ValueError:
        return None
