"""`jitaku serve`: the daemon, from binding its ports as root to running as `[run] user`."""

from __future__ import annotations

from jitaku import log, provision
from jitaku.cli.common import DEFAULT_DIR, RootDirOption, load_config


def serve(data_dir: RootDirOption = DEFAULT_DIR) -> None:
    """Run every listener and the queue in one process until SIGTERM; one per data directory."""
    from jitaku import app as daemon
    from jitaku import privileges, serve_lock

    config = load_config(data_dir)
    user = privileges.run_user(config)  # refused before anything is touched when it cannot be done
    changes = provision.tighten(config)  # first: the lock file is made in a directory nobody else may write to
    log.setup()
    # Bound as root (ports below 1024), then root is dropped for good, before anything is written in the
    # data directory and before the SMTP workers fork: nothing there is root's, no process stays root.
    with serve_lock.held(config.data_dir, owner=user), daemon.listening(config) as sockets:
        if user is not None:
            privileges.drop(user)
            log.event("dropped_root", user=user.pw_name, uid=user.pw_uid, gid=user.pw_gid)
        provision.complete(config)
        for change in changes:
            log.event("data_dir_mode", change=change)
        daemon.run(config, sockets)
