"""The DDNS updater's state rows."""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields
from typing import TYPE_CHECKING, Any

from jitaku.store.statements import Statements
from jitaku.store.transaction import Tx, statements_of, tx_of

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


@dataclass
class State:
    name: str
    family: int
    provider: str
    config_key: str
    address: str | None = None
    address_at: float | None = None
    sent_address: str | None = None
    sent_at: float | None = None
    result: str | None = None
    published: str | None = None
    published_at: float | None = None
    error: str | None = None
    fatal: bool = False
    attempts: int = 0
    retry_at: float = 0.0
    next_keepalive: float = 0.0

    @property
    def seen_right(self) -> bool | None:
        """Whether the authoritative servers answer our address; None while either is unknown."""
        if self.address is None or self.published is None:
            return None
        return self.address in self.published.split(",")


_COLUMNS = ", ".join(field.name for field in fields(State))
_SELECT = f"SELECT {_COLUMNS} FROM ddns_state"
_SAVE = (
    f"INSERT INTO ddns_state ({_COLUMNS}) VALUES ({', '.join('?' for _ in fields(State))})"
    " ON CONFLICT (name, family) DO UPDATE SET "
    + ", ".join(f"{field.name} = excluded.{field.name}" for field in fields(State)[2:])
)


def get(source: Connection | Statements, name: str, family: int) -> State | None:
    rows = statements_of(source).run(f"{_SELECT} WHERE name = ? AND family = ?", (name, family))
    return _state(rows[0]) if rows else None


def all_states(source: Connection | Statements) -> list[State]:
    return [_state(row) for row in statements_of(source).run(f"{_SELECT} ORDER BY name, family")]


def save(target: Connection | Tx, state: State) -> None:
    tx_of(target).run(_SAVE, astuple(state))


def _state(row: Any) -> State:
    state = State(*row)
    state.fatal = bool(state.fatal)  # SQLite's 0 or 1
    return state
