"""HTTP-01 tokens as files, DIR/acme/http-01/TOKEN holding the key authorization: written by whoever orders (the
daemon, or `jitaku cert renew` in its own process) and read by the daemon's web (web/acme.py), which may run as
another user. So the directory is 0755 and the files 0644: a key authorization is public by nature, the CA fetches
it over plain HTTP."""

from __future__ import annotations

import os
import re
from pathlib import Path

from jitaku import files
from jitaku.acme import state

DIRECTORY = Path("acme") / "http-01"
TOKEN = re.compile(r"[A-Za-z0-9_-]{1,128}")  # base64url, as RFC 8555 §8.3 makes them: never a path


def directory(data_dir: Path) -> Path:
    return data_dir / DIRECTORY


def publish(data_dir: Path, token: str, authorization: str, owner: tuple[int, int] | None = None) -> None:
    if not TOKEN.fullmatch(token):
        raise ValueError(f"not an ACME token: {token!r}")
    where = state.directory(data_dir) / DIRECTORY.name
    where.mkdir(mode=0o755, exist_ok=True)
    where.chmod(0o755)
    if owner is not None:  # root writing: the daemon's user replaces and withdraws tokens here too
        os.chown(where, *owner, follow_symlinks=False)
    files.replace(where / token, authorization.encode(), 0o644, owner)


def withdraw(data_dir: Path, token: str) -> None:
    if TOKEN.fullmatch(token):
        (directory(data_dir) / token).unlink(missing_ok=True)


def read(data_dir: Path, token: str) -> str | None:
    """The key authorization for TOKEN; None for a token not published, or not a token at all (`../x`)."""
    if not TOKEN.fullmatch(token):
        return None
    try:
        return (directory(data_dir) / token).read_text()
    except (OSError, UnicodeDecodeError):
        return None
