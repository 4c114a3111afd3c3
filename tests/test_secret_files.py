"""The pair's secret files sealed in the database (jitaku.ha.secret_files): what the primary publishes opens on a
standby with the same replication secret, byte for byte and with its mode; a row sealed with another secret, or
altered, is refused, logged and never written; a primary keeps what changed on its side and takes what changed
on the other's."""

from __future__ import annotations

import asyncio
import datetime
import logging
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from jitaku.config import Config, parse
from jitaku.ha import secret_files
from jitaku.ha.secret_files import TLS_FILES, Keeper, Keys, Refused
from jitaku.store import Database
from jitaku.store import secret_files as table
from jitaku.tls import ensure_self_signed

SECRET = "a-replication-secret-of-some-length"


def box(root: Path, name: str, secret: str | None = SECRET) -> Config:
    """A data directory with a DKIM key, a TLS pair and a web key of its own, and SECRET as its replication secret."""
    data_dir = root / name
    (data_dir / "dkim").mkdir(parents=True)
    (data_dir / "tls").mkdir()
    (data_dir / "dkim" / "example.test.jitaku.key").write_bytes(f"dkim key of {name}".encode())
    ensure_self_signed(data_dir / "tls", f"{name}.example.test")
    (data_dir / "web.secret").write_bytes(f"cookie key of {name}".encode())
    for path in [*data_dir.glob("*/*"), data_dir / "web.secret"]:
        path.chmod(0o600)
    (data_dir / "tls" / "cert.pem").chmod(0o644)
    if secret is not None:
        (data_dir / "ha").mkdir()
        (data_dir / "ha" / "replication.secret").write_text(secret + "\n")
    text = 'hostname = "mx.example.test"\ndomains = ["example.test"]\n'
    return Config(parse(text, data_dir / "jitaku.toml"), data_dir)


def renewed(config: Config, subject: str) -> bytes:
    """A certificate for SUBJECT of CONFIG's TLS key, as a renewal that keeps the key makes it."""
    key = serialization.load_pem_private_key((config.data_dir / "tls" / "key.pem").read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    built = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=90))
        .sign(key, hashes.SHA256())
    )
    return built.public_bytes(serialization.Encoding.PEM)


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
    (primary.data_dir / "tls" / "cert.pem").write_bytes(renewed(primary, "renewed.example.test"))
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
    assert (standby.data_dir / "tls" / "key.pem").read_bytes() == own["tls/key.pem"][0]
    assert files_of(standby)["dkim/example.test.jitaku.key"] == files_of(primary)["dkim/example.test.jitaku.key"]
    assert "secret_file_refused file=tls/key.pem" in caplog.text

    # a row naming a file jitaku does not keep is never written, whatever it holds
    keys = Keys.derive(SECRET)
    name = "../escaped"
    planted = table.Row(name, keys.seal(name, 0o600, b"x"), keys.digest(name, 0o600, b"x"), 0.0)
    asyncio.run(database.transact(lambda tx: table.save(tx, planted)))
    mirrored = secret_files.mirror_now(standby, database)  # `standby setup` says which cause
    assert mirrored.unknown == [name] and name not in mirrored.refused
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
    installed = renewed(standby, "installed.example.test")
    (standby.data_dir / "tls" / "cert.pem").write_bytes(installed)

    Keeper(standby, standby=False).settle(database)  # the daemon's start, before it loads its keys
    assert (standby.data_dir / "dkim" / "example.test.jitaku.key").read_bytes() == b"rotated on the old primary"
    assert (standby.data_dir / "tls" / "cert.pem").read_bytes() == installed
    publish(standby, database)
    mirror(primary, database)  # the old primary, set up again as a standby
    assert (primary.data_dir / "tls" / "cert.pem").read_bytes() == installed
    assert files_of(primary) == files_of(standby)


def test_a_linked_file_is_published_through_its_link(tmp_path: Path, database: Database) -> None:
    """tls/cert.pem and key.pem linked to certbot's live directory, as an admin sets it up: published as what they
    point to; the standby gets the files."""
    primary, standby = box(tmp_path, "one"), box(tmp_path, "two")
    live = tmp_path / "letsencrypt" / "live"
    live.mkdir(parents=True)
    for name in TLS_FILES:
        path = primary.data_dir / name
        (live / path.name).write_bytes(path.read_bytes())
        path.unlink()
        path.symlink_to(live / path.name)
    publish(primary, database)
    mirror(standby, database)
    for name in TLS_FILES:
        assert (standby.data_dir / name).read_bytes() == (live / Path(name).name).read_bytes()


def test_a_file_that_does_not_read_keeps_its_row(
    tmp_path: Path, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """A link to nowhere (certbot's live directory moved) or anything that does not read is not a file removed:
    its row stays, the standby keeps its copy, and the log says why."""
    primary, standby = box(tmp_path, "one"), box(tmp_path, "two")
    publish(primary, database)
    mirror(standby, database)
    before = files_of(standby)
    cert = primary.data_dir / "tls" / "cert.pem"
    cert.unlink()
    cert.symlink_to(tmp_path / "gone" / "cert.pem")
    (primary.data_dir / "web.secret").unlink()
    (primary.data_dir / "web.secret").mkdir()
    with caplog.at_level(logging.INFO, logger="jitaku"):
        publish(primary, database)
    mirror(standby, database)
    assert sorted(database.query_now(table.rows)) == [*sorted(before)]
    assert files_of(standby) == before
    assert "secret_file_unreadable file=tls/cert.pem" in caplog.text
    assert "secret_file_unreadable file=web.secret" in caplog.text

    # a file really gone is removed on both boxes
    (primary.data_dir / "web.secret").rmdir()
    publish(primary, database)
    mirror(standby, database)
    assert "web.secret" not in database.query_now(table.rows)
    assert not (standby.data_dir / "web.secret").exists()


def test_a_file_of_another_mode_is_mirrored_once(tmp_path: Path, database: Database) -> None:
    """A key 0660 on the primary: the standby's copy is 0640 (never more than 0644), and written once, not at
    every look."""
    primary, standby = box(tmp_path, "one"), box(tmp_path, "two")
    (primary.data_dir / "web.secret").chmod(0o660)
    publish(primary, database)
    assert "web.secret" in secret_files.mirror_now(standby, database).written
    assert files_of(standby)["web.secret"][1] == 0o640
    assert secret_files.mirror_now(standby, database).written == []
    publish(primary, database)
    assert secret_files.mirror_now(standby, database).written == []


def test_the_tls_pair_changes_as_one(tmp_path: Path, database: Database) -> None:
    """A renewal caught between writing the key and the certificate is not published; a standby whose key row does
    not open writes neither."""
    primary, standby = box(tmp_path, "one"), box(tmp_path, "two")
    publish(primary, database)
    published = database.query_now(table.rows)
    new = tmp_path / "new"
    ensure_self_signed(new, "new.example.test")
    (primary.data_dir / "tls" / "key.pem").write_bytes((new / "key.pem").read_bytes())  # the certificate not yet
    publish(primary, database)
    assert {name: database.query_now(table.rows)[name] for name in TLS_FILES} == {
        name: published[name] for name in TLS_FILES
    }
    (primary.data_dir / "tls" / "cert.pem").write_bytes((new / "cert.pem").read_bytes())
    publish(primary, database)
    mirror(standby, database)
    for name in TLS_FILES:
        assert (standby.data_dir / name).read_bytes() == (new / Path(name).name).read_bytes()

    # the key's row sealed with another secret: the standby keeps its pair whole
    ensure_self_signed(tmp_path / "newer", "newer.example.test")
    for name in TLS_FILES:
        (primary.data_dir / name).write_bytes((tmp_path / "newer" / Path(name).name).read_bytes())
    publish(primary, database)
    row, other = database.query_now(table.rows)["tls/key.pem"], Keys.derive("another-secret")
    resealed = table.Row(row.name, other.seal(row.name, 0o600, b"x"), row.digest, 0.0)
    asyncio.run(database.transact(lambda tx: table.save(tx, resealed)))
    mirror(standby, database)
    for name in TLS_FILES:
        assert (standby.data_dir / name).read_bytes() == (new / Path(name).name).read_bytes()


def test_a_standby_without_the_secret_says_so_once(
    tmp_path: Path, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    publish(box(tmp_path, "one"), database)
    standby = box(tmp_path, "two", secret=None)
    keeper = Keeper(standby, standby=True)
    with caplog.at_level(logging.INFO, logger="jitaku"):
        asyncio.run(keeper.once(database))
        asyncio.run(keeper.once(database))
    assert caplog.text.count("secret_files_no_secret") == 1


def test_a_primary_publishes_over_a_row_that_does_not_open(tmp_path: Path, database: Database) -> None:
    """The primary's file unchanged since it was published, its row replaced by one sealed with another secret:
    published again, rather than the row waited on for ever."""
    primary = box(tmp_path, "one")
    publish(primary, database)
    keys, name = Keys.derive("another-secret"), "web.secret"
    planted = table.Row(name, keys.seal(name, 0o600, b"x"), keys.digest(name, 0o600, b"x"), 0.0)
    asyncio.run(database.transact(lambda tx: table.save(tx, planted)))
    publish(primary, database)
    row = database.query_now(table.rows)[name]
    assert Keys.derive(SECRET).open(name, row.sealed, row.digest) == (0o600, b"cookie key of one")


def test_a_promoted_standby_takes_a_key_it_never_had_from_the_table(tmp_path: Path, database: Database) -> None:
    """A domain's key the old primary made after the standby's last look, another made here (by provision, before
    this fix) and never agreed on with the table: the daemon's start writes the table's, the key in DNS."""
    primary, standby = box(tmp_path, "one"), box(tmp_path, "two")
    new_key = "dkim/new.example.test.jitaku.key"
    (primary.data_dir / new_key).write_bytes(b"the key in DNS")
    publish(primary, database)
    (standby.data_dir / new_key).write_bytes(b"a key made here, in no DNS")
    Keeper(standby, standby=False).settle(database)
    assert (standby.data_dir / new_key).read_bytes() == b"the key in DNS"


def test_one_row_that_does_not_save_leaves_the_others(
    tmp_path: Path, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    primary = box(tmp_path, "one")
    long_name = "dkim/" + "k" * 250 + ".key"  # longer than 255: TEXT on both engines
    (primary.data_dir / long_name).write_bytes(b"a key of a long name")
    save = table.save

    def failing(target: object, row: table.Row) -> None:
        if row.name == "web.secret":
            raise RuntimeError("refused by the database")
        save(target, row)  # type: ignore[arg-type]

    monkeypatch.setattr(table, "save", failing)
    publish(primary, database)
    assert sorted(database.query_now(table.rows)) == sorted(set(secret_files.published(primary)) - {"web.secret"})
    monkeypatch.setattr(table, "save", save)
    publish(primary, database)
    assert "web.secret" in database.query_now(table.rows)


def test_the_acme_account_reaches_the_standby_which_had_no_acme_directory(tmp_path: Path, database: Database) -> None:
    """A promoted standby renews as the same ACME account: a new one would start the CA's rate limits afresh and
    lose the account's orders."""
    primary, standby = box(tmp_path, "one"), box(tmp_path, "two")
    (primary.data_dir / "acme").mkdir(mode=0o700)
    account = primary.data_dir / "acme" / "account.json"
    account.write_text('{"key": "the account key", "uri": "https://ca.example/acct/1"}')
    account.chmod(0o600)
    publish(primary, database)
    assert not (standby.data_dir / "acme").exists()
    mirror(standby, database)
    assert files_of(standby)["acme/account.json"] == (account.read_bytes(), 0o600)
    assert (standby.data_dir / "acme").stat().st_mode & 0o777 == 0o700


def test_the_backup_password_reaches_the_standby(tmp_path: Path, database: Database) -> None:
    """A promoted standby backs up to the same restic repository, and reads the snapshots the old primary took:
    without the password file neither can be done, and a new repository would start from nothing."""
    primary, standby = box(tmp_path, "one"), box(tmp_path, "two")
    password = primary.data_dir / "backup.secret"
    password.write_text("the restic password\n")
    password.chmod(0o600)
    publish(primary, database)
    mirror(standby, database)
    assert files_of(standby)["backup.secret"] == (b"the restic password\n", 0o600)
