"""restic, run as a child process: jitaku writes no backup format of its own, so restic alone (any machine, any
later version) can read the backups back.

restic is run with an argument list, never a shell, its repository and password file given in its environment
(RESTIC_REPOSITORY, RESTIC_PASSWORD_FILE) and nothing else of ours on its command line. What it prints is read
bounded (MAX_OUTPUT bytes, its --json lines parsed one at a time), it has a deadline (backup/child.py), and it dies
with us: a `jitaku backup now` killed with -9 leaves no restic running on to write a snapshot nobody asked for any
more.
Its failures become one sentence (BackupError) that says what to do, never its own multi-line text.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from jitaku import log
from jitaku.backup import child
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


# how restic says the repository's config file is not there, for a local path, sftp and the object stores; any
# other failure to read it (a permission, a network, an unmounted disk's mount point) is no reason to make one
MISSING = ("no such file or directory", "not exist", "404")


class Restic:
    """The repository TARGET opened with the password in PASSWORD_FILE, restic's cache in CACHE (None: none)."""

    def __init__(self, target: str, password_file: Path, cache: Path | None) -> None:
        self.target = target
        self.password_file = password_file
        self.cache = cache

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
        return cls(target, here / settings.password_file, here / CACHE)

    def run(
        self, *args: str, cwd: Path | None = None, timeout: float = QUICK, progress: Progress | None = None
    ) -> Output:
        """`restic ARGS` (its own options included); its output, or BackupError with one sentence. PROGRESS is
        given each of restic's --json status lines (a backup's), which are not kept."""
        environment = {key: value for key, value in os.environ.items() if key not in THEIRS}
        environment.update(
            RESTIC_REPOSITORY=self.target,
            RESTIC_PASSWORD_FILE=str(self.password_file),
            RESTIC_PROGRESS_FPS=str(PROGRESS_PER_SECOND),
        )
        if self.cache is not None:
            environment["RESTIC_CACHE_DIR"] = str(self.cache)
        options = [] if self.cache is not None else ["--no-cache"]
        found: list[Output] = []

        def read(stream: IO[bytes]) -> bool:
            output, overflow = _read(stream, progress)
            found.append(output)
            return overflow

        try:
            ended = child.run([PROGRAM, args[0], *options, *args[1:]], environment, timeout, cwd, read)
        except FileNotFoundError:
            raise BackupError("restic is not installed: `apt install restic` (Debian), or put it on PATH") from None
        output = found[0] if found else Output([], [])
        if ended.expired:
            raise BackupError(f"restic {args[0]} did not finish within {timeout:.0f} s, and was stopped")
        if ended.cut:
            raise BackupError(f"restic {args[0]} printed more than {MAX_OUTPUT >> 20} MB: stopped")
        if ended.code != 0:
            failure = self.failure(args[0], ended.stderr)
            log.event("restic_failed", command=args[0], code=ended.code, error=redacted(str(failure)))
            raise failure
        return output

    def failure(self, command: str, said: str) -> BackupError:
        """What restic's stderr SAID comes to, as one sentence naming the repository (its password, if it has one
        in it, left out) and what to do."""
        sentence = self._failure(command, redacted(said))
        return type(sentence)(redacted(str(sentence)))

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
        if "unable to open config file" in lowered or "is there a repository at" in lowered:
            opening = next((line for line in fatal if "config file" in line), fatal[-1] if fatal else lowered)
            if any(word in opening.lower() for word in MISSING):
                return NoRepository(f"no restic repository at {target}: run `jitaku backup init`")
            return BackupError(f"cannot reach the restic repository at {target}: {opening}")
        unknown = re.search(r'invalid id "([^"]*)": no matching id found', said, re.IGNORECASE)
        if unknown:
            return BackupError(f"{unknown.group(1)} is no snapshot in {target}: `jitaku backup list` shows them")
        if "no space left on device" in lowered:
            return BackupError(f"the backup target {target} is full (no space left on device): nothing was kept")
        if "already locked" in lowered:
            return Busy(
                f"the repository {target} is locked by another restic (a backup or check running now): try again"
                " when it ends; if none runs, `restic unlock` clears a stale lock"
            )
        # restore goes on past a file it cannot read back (a damaged pack) and fails at the end: name the file
        unread = [line.removeprefix(UNREAD).partition(": ") for line in lines if line.startswith(UNREAD)]
        if unread:
            path, _, why = unread[0]
            more = f" (and {counted(len(unread) - 1, 'more file')})" if len(unread) > 1 else ""
            return BackupError(f"restic {command} could not read {path}{more} back from {target}: {why}")
        last = (fatal or lines or ["no reason given"])[-1]
        return BackupError(f"restic {command} failed on {target}: {last}")


def redacted(text: str) -> str:
    """TEXT with the password of any URL in it (rest:https://user:password@host/...) replaced by ***: a target
    may carry one, and sentences and logs are read by more people than the configuration."""
    return re.sub(r"(://[^/\s:@]*:)[^/\s@]*@", r"\1***@", text)


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
