"""The one source of truth: tables, engine, the batched writer, and every SQL statement jitaku runs.

Each table group's statements are bound here as a submodule (`store.lists`, `store.health`, ...) so that the
services reach them under the one name the store gives them, instead of renaming them at each import.
"""

from jitaku.store import accounts, attempts, ddns, health, intake, lists, logins, mailstore, queue, tallies
from jitaku.store.database import Database
from jitaku.store.transaction import Tx

__all__ = [
    "Database",
    "Tx",
    "accounts",
    "attempts",
    "ddns",
    "health",
    "intake",
    "lists",
    "logins",
    "mailstore",
    "queue",
    "tallies",
]
