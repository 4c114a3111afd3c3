"""An sftp: backup target's user, host and port, as the ssh that restic runs will be given them.

A leaf module: config refuses a `[backup] target` ssh could not use with it, without importing the backup package,
and jitaku.backup.targets builds the ssh command from the same reading, so the two cannot disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

UNSPLITTABLE = re.compile(r"[\s'\"\\]")  # what restic's split of sftp.command would cut or unquote
SHORT = 'expected "sftp:USER@HOST:/PATH" (restic\'s form)'
LONG = 'expected "sftp://USER@HOST:PORT//PATH" (restic\'s form)'


@dataclass(frozen=True)
class Sftp:
    """Where an sftp: target's ssh connects: [USER@]HOST, and PORT when the target names one."""

    user: str
    host: str
    port: int | None

    @property
    def login(self) -> str:
        """ssh's destination word: USER@HOST, or HOST."""
        return f"{self.user}@{self.host}" if self.user else self.host


def parse_sftp(target: str) -> Sftp:
    """TARGET's user, host and port, in either of restic's forms: "sftp:[USER@]HOST:PATH" and
    "sftp://[USER@]HOST[:PORT]//PATH", the user as restic reads it (percent-decoded). ValueError with a sentence
    when ssh could not be given them (a word restic's split of sftp.command would cut, a port 0)."""
    if target.startswith("sftp://"):
        parts = urlsplit(target)
        try:
            port = parts.port
        except ValueError:
            port = 0
        if port == 0:
            raise ValueError("the port is not a number from 1 to 65535")
        if not parts.hostname or not parts.path.strip("/"):
            raise ValueError(LONG)
        where = Sftp(unquote(parts.username or ""), parts.hostname, port)
    else:
        place, colon, path = target.removeprefix("sftp:").partition(":")
        if "[" in place:  # an IPv6 address: restic too splits at its first colon
            raise ValueError('an IPv6 address needs the other form: "sftp://USER@[::1]//PATH"')
        if not re.fullmatch(r"([^@:/]+@)?[^@:/]+", place) or not colon or not path:
            raise ValueError(SHORT)
        user, _, host = place.rpartition("@")
        where = Sftp(user, host, None)
    if UNSPLITTABLE.search(where.login) or where.user.startswith("-") or where.host.startswith("-"):
        raise ValueError(
            "its user and host cannot be given to ssh through restic: no spaces, quotes or backslashes, and no"
            " leading -"
        )
    return where
