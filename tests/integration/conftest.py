"""Fixtures of the jitaku harness (tests/integration/harness.py): a factory of Jitaku instances, a running one with
users alice and bob, a small disk, and an install every user may read for a jitaku that drops root; and the ACME
peers (tests/integration/pebble.py): a factory of pebble CAs, and a challtestsrv DNS server."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import READER, Jitaku, MountNamespace, hidden_from_others, stop_all
from tests.integration.pebble import ChallTestSrv, Pebble
from tests.peers import Zone, tmpfs, wait_for_port


@pytest.fixture
def readable_install() -> Iterator[None]:
    """Python and jitaku readable by every user, as they are once installed (see MountNamespace)."""
    if os.geteuid() != 0:
        pytest.skip("dropping root needs root (CI runs as root)")
    import jitaku

    installed = [Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).parent, Path(jitaku.__file__).parent]
    installed += [Path(entry) for entry in sys.path if entry and Path(entry).exists()]
    hidden = hidden_from_others(installed)
    if not hidden:
        yield
        return
    namespace = MountNamespace(hidden)
    yield
    namespace.close()


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every user may enter (pytest's tmp_path is root's alone), for a data directory that a
    jitaku which dropped root must reach."""
    directory = Path(tempfile.mkdtemp(prefix="jitaku-shared-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def prepared_dirs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prepared")


@pytest.fixture
def jitaku_factory(tmp_path: Path, prepared_dirs: Path) -> Iterator[Any]:
    made: list[Jitaku] = []

    def make(dns_port: int | None = None, name: str = "jitaku", where: Path | None = None) -> Jitaku:
        """WHERE: the data directory's parent, tmp_path unless given (pytest's is root's alone, 0700)."""
        instance = Jitaku((where or tmp_path) / name, dns_port, prepared_dirs)
        made.append(instance)
        return instance

    yield make
    stop_all(made)
    for instance in made:
        instance.drop_database()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs, for a data dir that fills up for real."""
    with tmpfs(tmp_path / "disk", "16m") as mount:
        yield mount


@pytest.fixture
def mailhost(jitaku_factory: Any) -> Jitaku:
    """A running jitaku whose IMAP and POP3 listeners answer, with users alice and bob."""
    instance: Jitaku = jitaku_factory()
    instance.init(READER, "bob@example.org")
    instance.start()
    wait_for_port(instance.imap_port)
    wait_for_port(instance.pop3_port)
    return instance


@pytest.fixture
def server(jitaku_factory: Any, dns_zone: tuple[Zone, int]) -> Jitaku:
    """A running jitaku for example.test/example.org with users alice and bob, DNS pointed at `dns_zone`."""
    instance: Jitaku = jitaku_factory(dns_zone[1])
    instance.init("alice@example.test", "bob@example.org")
    instance.start()
    return instance


@pytest.fixture
def pebble_factory() -> Iterator[Any]:
    """make(dns_port, validity=None) -> Pebble: an ACME CA validating names through the DNS server at DNS_PORT
    (the dns_zone fixture's, or a challtestsrv's), its certificates lasting VALIDITY seconds; stopped after."""
    made: list[Pebble] = []

    def make(dns_port: int, validity: int | None = None) -> Pebble:
        made.append(Pebble(dns_port, validity))
        return made[-1]

    yield make
    for pebble in made:
        pebble.close()


@pytest.fixture
def challtestsrv() -> Iterator[ChallTestSrv]:
    """A DNS server answering every A query with 127.0.0.1 and the TXT records a test sets (set_txt, clear_txt)."""
    server = ChallTestSrv()
    yield server
    server.close()
