"""`jitaku backup init`: the password file and the restic repository it opens.

The password is made here, random, in a 0600 file, never typed: a person who must remember one picks a weak one.
Its loss loses every backup, which is why `init` says so once, plainly, when it makes the repository.
"""

from __future__ import annotations

import os
import secrets

from jitaku import log
from jitaku.backup.restic import NoRepository, Restic
from jitaku.config import Config
from jitaku.errors import BackupError


def init(config: Config) -> bool:
    """The password file made if missing, and the repository if there is none; True when the repository is new.
    One that exists already must open with the password file: then nothing changes."""
    restic = Restic.of(config)
    _password_file(restic)
    try:
        restic.run("cat", "config")
        return False
    except NoRepository:
        pass
    restic.run("init")
    log.event("backup_repository_made", target=restic.target)
    return True


def _password_file(restic: Restic) -> None:
    """A random password in a new 0600 file, unless one is there already (which is kept: it may be the copy that
    opens an existing repository)."""
    path = restic.password_file
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return
    except OSError as error:
        raise BackupError(f"cannot make the restic password file {path}: {error.strerror}") from None
    try:
        os.write(descriptor, (secrets.token_urlsafe(32) + "\n").encode())
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
