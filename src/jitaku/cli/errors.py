"""What main() shares with every command group without loading the command line's libraries: the error a
command refuses with, and the exit code of a usage mistake (`jitaku serve` runs without Typer and Rich)."""

from __future__ import annotations

USAGE = 2  # the exit code of a usage mistake, as typer (and click before it) gives it


class CliError(Exception):
    """A request the CLI cannot carry out; printed as one line."""
