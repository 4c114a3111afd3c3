"""`jitaku backup init`: the password file and the restic repository it opens.

The password is made here, random, in a 0600 file, never typed: a person who must remember one picks a weak one.
Its loss loses every backup, which is why `init` says so once, plainly, when it makes the repository.

A repository is made only where restic says there is none (a config file missing), never because the target
could not be read: a second disk that is not mounted, a permission, a network. And a local target on the data
directory's own filesystem is refused unless asked for (SAME_DISK): that is what an unmounted second disk's empty
mount point looks like, and a backup on the disk it backs up goes with it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from jitaku import log
from jitaku.backup.restic import BACKENDS, NoRepository, Restic
from jitaku.config import Config
from jitaku.errors import BackupError


def init(config: Config, same_disk: bool = False) -> bool:
    """The password file made if missing, and the repository if there is none; True when the repository is new.
    One that exists already must open with the password file: then nothing changes."""
    restic = Restic.of(config)
    _password_file(restic)
    try:
        restic.run("cat", "config")
        return False
    except NoRepository:
        pass
    if not same_disk:
        _on_another_disk(restic.target, config.data_dir)
    restic.run("init")
    log.event("backup_repository_made", target=restic.shown)
    return True


def _on_another_disk(target: str, data_dir: Path) -> None:
    """BackupError when the local TARGET would be on DATA_DIR's filesystem."""
    if target.startswith(BACKENDS) and not target.startswith("local:"):
        return
    place = Path(os.path.abspath(target.removeprefix("local:")))
    while not place.exists() and place != place.parent:  # restic makes the missing directories
        place = place.parent
    if os.stat(place).st_dev == os.stat(data_dir).st_dev:
        raise BackupError(
            f"the backup target {target} is on the same disk as the data directory {data_dir}: is the backup disk"
            " mounted? A backup there goes with this disk; `jitaku backup init --same-disk` makes it anyway"
        )


def _password_file(restic: Restic) -> None:
    """A random password in a new 0600 file, unless one is there already (which is kept: it may be the copy that
    opens an existing repository). Written whole beside it, then linked in: a run killed meanwhile leaves no empty
    password file that would be kept for ever."""
    path = restic.password_file
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.exists():
        return
    written = path.with_name(f".{path.name}.{os.getpid()}.new")
    try:
        descriptor = os.open(written, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(descriptor, (secrets.token_urlsafe(32) + "\n").encode())
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.link(written, path)  # never over one made meanwhile
    except FileExistsError:
        pass
    except OSError as error:
        raise BackupError(f"cannot make the restic password file {path}: {error.strerror}") from None
    finally:
        written.unlink(missing_ok=True)
