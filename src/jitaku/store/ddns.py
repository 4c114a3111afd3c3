"""The DDNS updater's state rows."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from jitaku.store.schema import ddns_state


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


def get(connection: Connection, name: str, family: int) -> State | None:
    row = connection.execute(select(ddns_state).where(ddns_state.c.name == name, ddns_state.c.family == family)).first()
    return State(**row._asdict()) if row else None


def all_states(connection: Connection) -> list[State]:
    rows = connection.execute(select(ddns_state).order_by(ddns_state.c.name, ddns_state.c.family))
    return [State(**row._asdict()) for row in rows]


def save(connection: Connection, state: State) -> None:
    values = asdict(state)
    found = connection.execute(
        update(ddns_state).where(ddns_state.c.name == state.name, ddns_state.c.family == state.family).values(**values)
    )
    if found.rowcount == 0:
        connection.execute(insert(ddns_state).values(**values))
