"""`jitaku serve`: the daemon, from binding its ports as root to running as `[run] user`."""

from __future__ import annotations

from jitaku.cli.common import DEFAULT_DIR, RootDirOption


def serve(data_dir: RootDirOption = DEFAULT_DIR) -> None:
    """Run every listener and the queue in one process until SIGTERM; one per data directory."""
    from jitaku import app as daemon

    daemon.serve(data_dir)
