"""Errors meant for a person, kept apart so the CLI can name them without importing the daemon."""


class ServeError(Exception):
    """The daemon cannot start; the message is one line for a person."""
