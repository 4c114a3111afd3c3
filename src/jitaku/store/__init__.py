"""The one source of truth: tables, engine, the batched writer, and every SQL statement jitaku runs."""

from jitaku.store.database import Database

__all__ = ["Database"]
