"""Fixtures over the peers of tests/peers.py, for a test at any level: each starts its peer for one test (Dovecot
for the session) and stops it after; and the store most store tests start from. jitaku's modules compiled once
for the run's thousands of `jitaku` processes."""

from __future__ import annotations

import compileall
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dnslib.server import DNSServer

import jitaku
from jitaku.store import Database, accounts
from tests.peers import Dovecot, NetworkNamespace, Sink, StandIn, Zone, free_port, serve, stop_serving
from tests.postgres import database_url


def pytest_sessionstart(session: pytest.Session) -> None:
    """Byte-code for jitaku's modules, written by the controller before any worker starts: where
    PYTHONDONTWRITEBYTECODE is set, each `jitaku` command and daemon the tests start would compile them again (a
    tenth of a second of each start)."""
    if not hasattr(session.config, "workerinput"):
        compileall.compile_dir(Path(jitaku.__file__).parent, quiet=1)


@pytest.fixture
def network_namespace() -> Iterator[NetworkNamespace]:
    """Ask for it first among a test's fixtures, so that theirs open their sockets inside it."""
    if os.geteuid() != 0:
        pytest.skip("a network namespace needs root (CI runs as root)")
    namespace = NetworkNamespace()
    yield namespace
    namespace.close()


@pytest.fixture
def dns_zone() -> Iterator[tuple[Zone, int]]:
    zone = Zone()
    port = free_port()
    servers = [
        DNSServer(zone, address="127.0.0.1", port=port),
        DNSServer(zone, address="127.0.0.1", port=port, tcp=True),
    ]
    for server in servers:
        serve(server.server)
    yield zone, port
    for server in servers:
        stop_serving(server.server)


@pytest.fixture
def sink_factory() -> Iterator[Any]:
    sinks: list[Sink] = []

    def make(*options: str, **where: Any) -> Sink:
        sink = Sink(*options, **where)
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        sink.stop()


@pytest.fixture
def stand_in() -> Iterator[Any]:
    made: list[StandIn] = []

    def make(handle: Any) -> StandIn:
        made.append(StandIn(handle))
        return made[-1]

    yield make
    for item in made:
        item.close()


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    if os.geteuid() != 0:
        pytest.skip("Dovecot runs its mail processes as nobody, which needs root (CI runs as root)")
    server = Dovecot()
    yield server
    server.close()


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    """A store with one user, alice@example.test (a module may define its own `database` instead)."""
    database = Database(database_url(tmp_path))
    with database.transaction() as connection:
        accounts.add_user(connection, "alice@example.test", None)
    yield database
    database.close()
