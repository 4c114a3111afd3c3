"""Errors meant for a person, kept apart so the CLI can name them without importing the daemon."""


class ServeError(Exception):
    """The daemon cannot start; the message is one line for a person."""


class PrivilegeError(Exception):
    """jitaku cannot run as the user it should (`[run] user`, the data directory's owner); one line for a person."""


class ClusterError(Exception):
    """The managed PostgreSQL cluster cannot be made, started or stopped; one line for a person."""


class SchemaSkew(Exception):
    """The database's schema is at another revision than this jitaku's and cannot be migrated here (a standby's
    is read-only); one line for a person."""


class BackupError(Exception):
    """A backup, restore or verify that failed or was refused; one line for a person, naming the repository or
    the snapshot."""
