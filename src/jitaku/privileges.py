"""Who jitaku runs as: root only for what needs it (binding ports below 1024, reading SMART), the data
directory's owner for everything else.

The daemon parses strangers' mail, so `[run] user` makes `jitaku serve` bind its listeners as root and then
become that user for good. A command run as root on a data directory that belongs to someone else (the
service's) becomes that owner first: a database, WAL or key file it left behind as root's would be one the
daemon, running as its own user, cannot open.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from jitaku.config import Config
from jitaku.errors import PrivilegeError

ROOT = 0


def run_user(config: Config) -> pwd.struct_passwd | None:
    """Whom `jitaku serve` becomes once its listeners are bound: `[run] user`, unless this process is that
    user already (started by systemd with `User=`); None when there is nothing to drop.

    Raises PrivilegeError, before anything is bound or written, when it cannot be done.
    """
    name = config.settings.run.user
    if name is None:
        return None
    try:
        user = pwd.getpwnam(name)
    except KeyError:
        raise PrivilegeError(
            f"[run] user: there is no user {name!r} on this system; create it "
            f"(useradd --system --no-create-home --shell /usr/sbin/nologin {name}) or change [run] user"
        ) from None
    me = os.geteuid()
    if me not in (ROOT, user.pw_uid):
        raise PrivilegeError(
            f"[run] user is {name}, but this runs as {user_name(me)}: start it as root (it binds its ports, "
            f"then becomes {name}) or as {name}"
        )
    stranger = foreign(config.data_dir, user.pw_uid)
    if stranger is not None:
        path, owner = stranger
        raise PrivilegeError(
            f"{path} belongs to {user_name(owner)}, not to {name} ([run] user); run: chown -R {name}: {config.data_dir}"
        )
    return None if me == user.pw_uid else user


def foreign(data_dir: Path, uid: int) -> tuple[Path, int] | None:
    """The first path in DATA_DIR (itself included) that UID does not own, and its owner; None when UID owns
    them all. Symbolic links are looked at, never followed (but the data directory itself, which the owner
    named)."""
    owner = data_dir.stat().st_uid
    if owner != uid:
        return data_dir, owner
    for parent, directories, files in os.walk(data_dir):
        directories.sort()
        for name in sorted(directories + files):
            path = Path(parent) / name
            try:
                owner = path.lstat().st_uid
            except FileNotFoundError:  # a running daemon's file, gone since the listing
                continue
            if owner != uid:
                return path, owner
    return None


def drop(user: pwd.struct_passwd) -> None:
    """Become USER for good: its groups, its group and its uid (real, effective and saved alike, so no
    setuid(0) can take root back), and check that root is gone."""
    os.initgroups(user.pw_name, user.pw_gid)
    os.setresgid(user.pw_gid, user.pw_gid, user.pw_gid)
    os.setresuid(user.pw_uid, user.pw_uid, user.pw_uid)
    if user.pw_uid != ROOT and _can_become_root():
        raise PrivilegeError(f"became {user.pw_name}, yet setuid(0) still works; stopped rather than run as root")
    os.environ.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)


def become_owner(data_dir: Path) -> None:
    """Run as root on DATA_DIR that belongs to another user: become that user, so that nothing this
    command writes there is root's. Otherwise (not root, root's directory, none yet) change nothing."""
    if os.geteuid() != ROOT:
        return
    try:
        owner = data_dir.stat().st_uid
    except FileNotFoundError:  # `jitaku init` makes it
        return
    if owner == ROOT:
        return
    try:
        user = pwd.getpwuid(owner)
    except KeyError:
        raise PrivilegeError(
            f"{data_dir} belongs to uid {owner}, which no user on this system has; "
            f"give it to the user jitaku runs as: chown -R USER: {data_dir}"
        ) from None
    drop(user)


def _can_become_root() -> bool:
    try:
        os.setuid(ROOT)
    except PermissionError:
        return False
    return True


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"
