"""The key that signs the web's cookies and links (the admin's session, csrf.py's token, the comment form's token
and the owner's approve/spam links): made with the database and DKIM keys (provision.complete), before the daemon
says it listens, and kept 0600 in the data directory."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from jitaku.tls import write_secret

SECRET_FILE = "web.secret"


def session_secret(data_dir: Path) -> str:
    """The key that signs session cookies: made once (written whole, then renamed), kept 0600 in the data dir."""
    path = data_dir / SECRET_FILE
    if not path.exists():
        # the data directory itself may be a link (the owner's), which the writer refuses as a file's parent
        partial = data_dir.resolve() / f"{SECRET_FILE}.{os.getpid()}"
        write_secret(partial, secrets.token_hex(32).encode())
        os.replace(partial, path)
    secret = path.read_text().strip()
    if len(secret) < 32:
        raise ValueError(f"{path} holds no usable key; delete it and jitaku makes a new one")
    return secret
