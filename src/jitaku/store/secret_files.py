"""The secret_files rows (jitaku.ha.secret_files seals and opens them; here they are only stored and read)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from jitaku.store.statements import Statements
from jitaku.store.transaction import Tx, statements_of, tx_of

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


@dataclass(frozen=True)
class Row:
    name: str
    sealed: bytes
    digest: str
    updated_at: float


def rows(source: Connection | Statements) -> dict[str, Row]:
    found = statements_of(source).run("SELECT name, sealed, digest, updated_at FROM secret_files")
    return {str(name): Row(str(name), bytes(sealed), str(digest), float(at)) for name, sealed, digest, at in found}


def save(target: Connection | Tx, row: Row) -> None:
    tx_of(target).run(
        "INSERT INTO secret_files (name, sealed, digest, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE"
        " SET sealed = excluded.sealed, digest = excluded.digest, updated_at = excluded.updated_at",
        (row.name, row.sealed, row.digest, row.updated_at),
    )


def delete(target: Connection | Tx, name: str) -> None:
    tx_of(target).run("DELETE FROM secret_files WHERE name = ?", (name,))
