"""The pair's secret files sealed in the database (jitaku.ha.secret_files): what the primary publishes opens on a
standby with the same replication secret, byte for byte and with its mode; a row sealed with another secret, or
altered, is refused, logged and never written; a primary keeps what changed on its side and takes what changed
on the other's."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from jitaku.config import Config, parse
from jitaku.ha import secret_files
from jitaku.ha.secret_files import Keeper, Keys, Refused
from jitaku.store import Database
from jitaku.store import secret_files as table

SECRET = "a-replication-secret-of-some-length"


def box(root: Path, name: str, secret: str | None = SECRET) -> Config:
    """A data directory with a DKIM key, a TLS pair and a web key of its own, and SECRET as its replication secret."""
    data_dir = root / name
    (data_dir / "dkim").mkdir(parents=True)
    (data_dir / "tls").mkdir()
    (data_dir / "dkim" / "example.test.jitaku.key").write_bytes(f"dkim key of {name}".encode())
    (data_dir / "tls" / "key.pem").write_bytes(f"tls key of {name}".encode())
    (data_dir / "tls" / "cert.pem").write_bytes(f"certificate of {name}".encode())
    (data_dir / "web.secret").write_bytes(f"cookie key of {name}".encode())
    for path in [*data_dir.glob("*/*"), data_dir / "web.secret"]:
        path.chmod(0o600)
    (data_dir / "tls" / "cert.pem").chmod(0o644)
    if secret is not None:
        (data_dir / "ha").mkdir()
        (data_dir / "ha" / "replication.secret").write_text(secret + "\n")
    text = 'hostname = "mx.example.test"\ndomains = ["example.test"]\n'
    return Config(parse(text, data_dir / "jitaku.toml"), data_dir)


def files_of(config: Config) -> dict[str, tuple[bytes, int]]:
    found = {}
    for name in secret_files.published(config):
        path = config.data_dir / name
        found[name] = (path.read_bytes(), path.stat().st_mode & 0o777)
    return found


def publish(config: Config, database: Database) -> None:
    asyncio.run(Keeper(config, standby=False).once(database))


def mirror(config: Config, database: Database) -> None:
    asyncio.run(Keeper(config, standby=True).once(database))


def test_a_sealed_file_opens_with_the_same_secret_and_name_only() -> None:
    keys = Keys.derive(SECRET)
    sealed = keys.seal("dkim/example.test.jitaku.key", 0o600, b"the key")
    digest = keys.digest("dkim/example.test.jitaku.key", 0o600, b"the key")
    assert b"the key" not in sealed
    assert keys.open("dkim/example.test.jitaku.key", sealed, digest) == (0o600, b"the key")
    assert Keys.derive(SECRET).digest("web.secret", 0o600, b"x") == keys.digest("web.secret", 0o600, b"x")
    with pytest.raises(Refused, match="does not open with this box's replication secret"):
        Keys.derive("another-secret").open("dkim/example.test.jitaku.key", sealed, digest)
    with pytest.raises(Refused, match="does not open"):  # the name is the associated data
        keys.open("dkim/example.test.other.key", sealed, digest)
    with pytest.raises(Refused, match="does not match its digest"):
        keys.open("dkim/example.test.jitaku.key", sealed, keys.digest("dkim/example.test.jitaku.key", 0o600, b"x"))


def test_a_standby_mirrors_what_the_primary_publishes(tmp_path: Path, database: Database) -> None:
    primary, standby = box(tmp_path, "one"), box(tmp_path, "two")
    publish(primary, database)
    stored = database.query_now(table.rows)
    assert sorted(stored) == ["dkim/example.test.jitaku.key", "tls/cert.pem", "tls/key.pem", "web.secret"]
    assert all(b"of one" not in row.sealed for row in stored.values())
    mirror(standby, database)
    assert files_of(standby) == files_of(primary)
    assert files_of(standby)["tls/key.pem"][1] == 0o600 and files_of(standby)["tls/cert.pem"][1] == 0o644

    # a key added and another changed on the primary reach the standby at the next look; one removed leaves it
    (primary.data_dir / "dkim" / "lists.example.test.jitaku.key").write_bytes(b"a list domain's key")
    (primary.data_dir / "dkim" / "lists.example.test.jitaku.key").chmod(0o600)
    (primary.data_dir / "tls" / "cert.pem").write_bytes(b"a renewed certificate")
    (primary.data_dir / "web.secret").unlink()
    publish(primary, database)
    mirror(standby, database)
    assert files_of(standby) == files_of(primary)
    assert not (standby.data_dir / "web.secret").exists()
    before = database.query_now(table.rows)
    publish(primary, database)  # nothing changed: nothing written
    assert database.query_now(table.rows) == before


def test_a_lone_box_publishes_nothing(tmp_path: Path, database: Database) -> None:
    publish(box(tmp_path, "alone", secret=None), database)
    assert database.query_now(table.rows) == {}


def test_a_row_sealed_with_another_secret_or_altered_is_refused_and_logged(
    tmp_path: Path, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    primary, standby = box(tmp_path, "one"), box(tmp_path, "two", secret="not-the-primarys-secret")
    publish(primary, database)
    own = files_of(standby)
    with caplog.at_level(logging.INFO, logger="jitaku"):
        mirror(standby, database)
    assert files_of(standby) == own
    refused = [r.getMessage() for r in caplog.records if "secret_file_refused" in r.getMessage()]
    assert len(refused) == 4 and "does not open with this box's replication secret" in refused[0]

    # the same secret, a row altered in the database: refused, the standby's file kept
    (standby.data_dir / "ha" / "replication.secret").write_text(SECRET + "\n")
    row = database.query_now(table.rows)["tls/key.pem"]
    altered = row.sealed[:-1] + bytes([row.sealed[-1] ^ 1])
    asyncio.run(database.transact(lambda tx: table.save(tx, table.Row(row.name, altered, row.digest, 0.0))))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="jitaku"):
        mirror(standby, database)
    assert (standby.data_dir / "tls" / "key.pem").read_bytes() == b"tls key of two"
    assert files_of(standby)["dkim/example.test.jitaku.key"] == files_of(primary)["dkim/example.test.jitaku.key"]
    assert "secret_file_refused file=tls/key.pem" in caplog.text

    # a row naming a file jitaku does not keep is never written, whatever it holds
    keys = Keys.derive(SECRET)
    name = "../escaped"
    planted = table.Row(name, keys.seal(name, 0o600, b"x"), keys.digest(name, 0o600, b"x"), 0.0)
    asyncio.run(database.transact(lambda tx: table.save(tx, planted)))
    mirror(standby, database)
    assert not (tmp_path / "escaped").exists()


def test_a_promoted_standby_takes_the_newer_rows_and_publishes_its_own_changes(
    tmp_path: Path, database: Database
) -> None:
    """The old primary changed a key after the standby's last look; the standby, now primary, starts: it writes
    that key (its file unchanged since it agreed with the table) and publishes the file its admin changed."""
    primary, standby = box(tmp_path, "one"), box(tmp_path, "two")
    publish(primary, database)
    mirror(standby, database)
    (primary.data_dir / "dkim" / "example.test.jitaku.key").write_bytes(b"rotated on the old primary")
    publish(primary, database)
    (standby.data_dir / "tls" / "cert.pem").write_bytes(b"installed on the new primary")

    Keeper(standby, standby=False).settle(database)  # the daemon's start, before it loads its keys
    assert (standby.data_dir / "dkim" / "example.test.jitaku.key").read_bytes() == b"rotated on the old primary"
    assert (standby.data_dir / "tls" / "cert.pem").read_bytes() == b"installed on the new primary"
    publish(standby, database)
    mirror(primary, database)  # the old primary, set up again as a standby
    assert (primary.data_dir / "tls" / "cert.pem").read_bytes() == b"installed on the new primary"
    assert files_of(primary) == files_of(standby)
