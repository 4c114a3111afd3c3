"""The data directory's secret files (the DKIM keys, the lists' included; the TLS certificate and key; the web's
cookie key), kept the same on both boxes of a pair, through the database.

The decision: after a failover the standby must sign with the same DKIM keys (the selectors published in DNS
name them), serve the same TLS certificate, and accept the cookies the primary signed. These files go INTO THE
DATABASE, ENCRYPTED, rather than being copied between the boxes: the database is the one thing that already
streams from the primary to the standby, over a connection both ends trust, and a key changed on the primary
(a new list's, a renewed certificate) follows it with nothing more to set up, open or keep running (a copy would
need a second channel, ssh or rsync, with its own keys, port and failure modes). Encrypted, because what is in
the database is in every base backup, WAL segment and dump of it, which must not hand out the keys that sign our
mail: each file is sealed with AES-GCM under a key derived (HKDF-SHA256) from the replication secret
(DIR/ha/replication.secret, which `jitaku standby allow` makes on the primary and `jitaku standby setup` copies to
the standby), the file's name being the associated data (a sealed file cannot be passed off as another). The
row's digest is an HMAC of the file's mode and bytes under a second key derived from the same secret: each box
compares its file with the row without opening the row, and the digest says nothing about the file to one
without the secret. A row that does not open (another secret, or altered) is refused, logged and never written.

Who writes which way:
- The primary's daemon (its main process) publishes its files into the table at start and every PERIOD seconds
  when they changed, only when the replication secret exists: a lone box publishes nothing. `standby allow`
  publishes once too, so that the base backup a `standby setup` takes holds them.
- The standby's daemon mirrors the table into the files (0600, as the primary's are; the certificate keeps its
  0644), written whole then renamed, when a digest differs, at start and every PERIOD; a file whose row the
  primary removed is removed. `standby setup` mirrors once at its end.
- A daemon that starts as primary (a promoted standby among them) first mirrors what the table holds newer than
  its files, before provision makes a missing key and before its workers fork (jitaku.app): DIR/ha/secret_files.json
  keeps the digest each file had when this box last agreed with the table, so a file changed here since (the
  admin's new certificate) is published, and a row changed by the other box since, or never agreed on here (a key
  the old primary made after the last mirror), is written here. A row that does not open is published over.
- A linked file (tls/cert.pem to certbot's live directory) is published as what it points to; a file there that
  does not read keeps its row (logged): only a file really gone removes it. The TLS certificate and key move as
  one: published only when the key is the certificate's, written both or neither. A copy keeps at most 0644 of
  the file's mode, and the digest covers that much alone.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import stat
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from jitaku import files, log
from jitaku.config import Config
from jitaku.ha.standby import read_secret, secret_path
from jitaku.store import secret_files as table
from jitaku.store.transaction import Tx
from jitaku.tls import pair_matches

if TYPE_CHECKING:
    from jitaku.store import Database

PERIOD = 30.0  # seconds between two looks at the files and the table
STATE_NAME = "secret_files.json"  # in DIR/ha: the digests this box last agreed with the table on
INFO = b"jitaku secret files v1"  # HKDF's info: these keys serve this purpose alone
NONCE = 12
MODE_MASK = 0o644  # what a written copy keeps of a file's mode; its digest and seal cover this much alone
# What a row may name, in the data directory: a row naming anything else is refused, whatever it holds. A later
# secret file is added here and in `published`.
NAMES = re.compile(
    r"dkim/[A-Za-z0-9][A-Za-z0-9._-]*\.key|tls/(cert|key)\.pem|web\.secret|acme/account\.json|backup\.secret"
)
TLS_FILES = ("tls/cert.pem", "tls/key.pem")
WEB_SECRET = "web.secret"
ACME_ACCOUNT = "acme/account.json"  # the ACME account's key and URL: a promoted standby renews as the same account
# restic's password (the default [backup] password_file): a promoted standby backs up to the same repository, and
# reads the old primary's snapshots. One named elsewhere by [backup] password_file is the admin's to copy.
BACKUP_SECRET = "backup.secret"


class Refused(Exception):
    """A row that does not open with this box's secret, or whose content is not what its digest says."""


@dataclass(frozen=True)
class Keys:
    """Derived from the replication secret: one seals the files, the other makes their digests."""

    sealing: bytes
    mac: bytes

    @classmethod
    def derive(cls, secret: str) -> Keys:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        derived = HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=INFO).derive(secret.encode())
        return cls(derived[:32], derived[32:])

    def digest(self, name: str, mode: int, data: bytes) -> str:
        message = name.encode() + b"\0" + mode.to_bytes(2, "big") + data
        return hmac.new(self.mac, message, hashlib.sha256).hexdigest()

    def seal(self, name: str, mode: int, data: bytes) -> bytes:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = secrets.token_bytes(NONCE)
        return nonce + AESGCM(self.sealing).encrypt(nonce, mode.to_bytes(2, "big") + data, name.encode())

    def open(self, name: str, sealed: bytes, digest: str) -> tuple[int, bytes]:
        """The mode and bytes sealed in a row; Refused unless they open with these keys, under NAME, and match
        DIGEST."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        try:
            plain = AESGCM(self.sealing).decrypt(sealed[:NONCE], sealed[NONCE:], name.encode())
        except (InvalidTag, ValueError):
            raise Refused("does not open with this box's replication secret (another secret, or altered)") from None
        mode, data = int.from_bytes(plain[:2], "big"), plain[2:]
        if not hmac.compare_digest(self.digest(name, mode, data), digest):
            raise Refused("its content does not match its digest (altered)")
        return mode, data


def published(config: Config) -> list[str]:
    """The secret files this box has, by their names in the data directory: a link counts (tls/cert.pem linked to
    /etc/letsencrypt/live/...), and is published by reading through it; only a file written here from the table
    replaces the link itself."""
    names = [f"dkim/{path.name}" for path in sorted(config.dkim_dir.glob("*.key"))]
    names += [
        name
        for name in (*TLS_FILES, WEB_SECRET, ACME_ACCOUNT, BACKUP_SECRET)
        if os.path.lexists(config.data_dir / name)
    ]
    return [name for name in names if NAMES.fullmatch(name)]


@dataclass(frozen=True)
class Local:
    """A secret file as read here: its mode as a written copy keeps it (MODE_MASK), its bytes, its digest."""

    mode: int
    data: bytes
    digest: str


@dataclass(frozen=True)
class Unit:
    """Rows saved or deleted in one transaction: one row, or the TLS pair (a standby never sees a certificate
    without its key)."""

    saves: list[table.Row]
    deletes: list[str]

    @property
    def names(self) -> list[str]:
        return [row.name for row in self.saves] + self.deletes

    def apply(self, tx: Tx) -> None:
        for row in self.saves:
            table.save(tx, row)
        for name in self.deletes:
            table.delete(tx, name)


@dataclass
class Changes:
    """What one look found: rows to save or delete (a primary's), and the digests to remember once they are."""

    saves: list[table.Row] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    agreed: dict[str, str | None] = field(default_factory=dict)  # None: forget the name
    written: list[str] = field(default_factory=list)  # files written from the table
    refused: list[str] = field(default_factory=list)  # rows that did not open
    unknown: list[str] = field(default_factory=list)  # rows naming a file this version does not keep

    def units(self) -> list[Unit]:
        """Each row on its own, so that one the database refuses does not stop the others; the TLS pair as one."""
        pair = [row for row in self.saves if row.name in TLS_FILES]
        units = [Unit([row], []) for row in self.saves if row.name not in TLS_FILES]
        units += [Unit(pair, [])] if pair else []
        return units + [Unit([], [name]) for name in self.deletes]

    def unsaved(self, unit: Unit, error: Exception) -> None:
        """UNIT's rows were not saved: nothing agreed on them, the next look tries again."""
        for name in unit.names:
            self.agreed.pop(name, None)
        log.event("secret_file_not_saved", logging.WARNING, file=" ".join(unit.names), error=str(error))


class Keeper:
    """One box's side: STANDBY mirrors the table into the files; a primary publishes its files, and first takes
    from the table what the other box changed since they last agreed."""

    def __init__(self, config: Config, standby: bool) -> None:
        self._config = config
        self._standby = standby
        self._keys: tuple[str, Keys] | None = None
        self._logged: set[tuple[str, ...]] = set()  # each refusal, unreadable file, warning logged once

    def keys(self) -> Keys | None:
        """None without a replication secret: a box without a pair keeps its files to itself."""
        path = secret_path(self._config)
        if not path.exists():
            return None
        secret = read_secret(path)
        if self._keys is None or self._keys[0] != secret:
            self._keys = (secret, Keys.derive(secret))
        return self._keys[1]

    def look(self, keys: Keys, rows: dict[str, table.Row], publish: bool = True) -> Changes:
        """Compare the files with ROWS; write the files the table holds newer; the rows to save (PUBLISH) or
        delete. Blocking (files, crypto): off the event loop, or before it serves."""
        state = self._state()
        changes = Changes()
        local, unreadable = self._files(keys)
        opened: dict[str, tuple[table.Row, int, bytes]] = {}
        for name in sorted(set(local) | set(rows) | set(state)):
            row, agreed = rows.get(name), state.get(name)
            mine = local[name].digest if name in local else None
            if self._standby:
                if row is not None and mine != row.digest:
                    self._open(keys, row, changes, opened)
                elif row is None and agreed is not None:
                    self._remove(name, changes)
                elif row is not None:
                    changes.agreed[name] = row.digest
            elif name in unreadable:
                continue  # neither published nor removed: row and file stay as they are until it reads again
            elif row is not None and mine == row.digest:
                changes.agreed[name] = mine
            # unchanged here since we agreed, or never agreed (a promoted standby's missing key): the table wins;
            # a row that does not open is published over
            elif row is not None and (mine == agreed or agreed is None) and self._open(keys, row, changes, opened):
                continue
            elif mine is not None and publish:
                self._publish(keys, name, local[name], changes)
            elif mine is None and row is not None and agreed is not None and publish:  # removed here since we agreed
                changes.deletes.append(name)
                changes.agreed[name] = None
                log.event("secret_file_unpublished", file=name)
            elif mine is None and row is None:
                changes.agreed[name] = None
        self._pair(keys, rows, local, changes, opened)
        self._write(opened, changes)
        return changes

    def remember(self, agreed: dict[str, str | None]) -> None:
        """Keep AGREED in DIR/ha/secret_files.json: after the files were written, or the rows committed."""
        if not agreed:
            return
        state = self._state()
        for name, digest in agreed.items():
            if digest is None:
                state.pop(name, None)
            else:
                state[name] = digest
        path = self._config.data_dir / "ha" / STATE_NAME
        if state != self._state():
            path.parent.mkdir(mode=0o700, exist_ok=True)
            files.replace(path, json.dumps(state, sort_keys=True).encode() + b"\n", 0o600, files.owner(path.parent))

    def settle(self, database: Database) -> None:
        """Once, at the daemon's start, before it makes or loads its keys: write what the table holds newer than
        the files. Rows are written by `keep`'s first look, in the writer's transactions."""
        keys = self.keys()
        if keys is None:
            return
        changes = self.look(keys, database.query_now(table.rows), publish=False)
        self.remember(changes.agreed)

    async def once(self, database: Database) -> None:
        keys = await asyncio.to_thread(self.keys)
        if keys is None:
            if self._standby:
                self._once(("no secret",), "secret_files_no_secret", path=str(secret_path(self._config)))
            return
        rows = await asyncio.to_thread(database.query_now, table.rows)
        changes = await asyncio.to_thread(self.look, keys, rows, not self._standby)
        for unit in changes.units():
            try:
                await database.transact(unit.apply)
            except Exception as error:  # a row the database refuses: the others are saved
                changes.unsaved(unit, error)
        await asyncio.to_thread(self.remember, changes.agreed)

    def _once(self, key: tuple[str, ...], event: str, **fields: str) -> None:
        if key not in self._logged:
            self._logged.add(key)
            log.event(event, logging.WARNING, **fields)

    def _state(self) -> dict[str, str]:
        path = self._config.data_dir / "ha" / STATE_NAME
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}

    def _files(self, keys: Keys) -> tuple[dict[str, Local], set[str]]:
        """The secret files here, read through links; and those that are there but do not read (a permission, a
        link to nowhere): only a file really gone is removed from the table."""
        local: dict[str, Local] = {}
        unreadable: set[str] = set()
        for name in published(self._config):
            path = self._config.data_dir / name
            try:
                with path.open("rb") as file:
                    mode = stat.S_IMODE(os.fstat(file.fileno()).st_mode) & MODE_MASK
                    data = file.read()
            except OSError as error:
                if isinstance(error, FileNotFoundError) and not os.path.lexists(path):
                    continue  # removed since published() listed it
                unreadable.add(name)
                self._once(("unreadable", name, str(error)), "secret_file_unreadable", file=name, error=str(error))
                continue
            local[name] = Local(mode, data, keys.digest(name, mode, data))
        return local, unreadable

    def _publish(self, keys: Keys, name: str, mine: Local, changes: Changes) -> None:
        changes.saves.append(table.Row(name, keys.seal(name, mine.mode, mine.data), mine.digest, time.time()))
        changes.agreed[name] = mine.digest

    def _open(
        self, keys: Keys, row: table.Row, changes: Changes, opened: dict[str, tuple[table.Row, int, bytes]]
    ) -> bool:
        """Open ROW into OPENED, to be written; False (logged once) when it is refused."""
        try:
            if not NAMES.fullmatch(row.name):
                changes.unknown.append(row.name)
                raise Refused("names no secret file this version of jitaku keeps")
            mode, data = keys.open(row.name, row.sealed, row.digest)
        except Refused as refused:
            if row.name not in changes.unknown:
                changes.refused.append(row.name)
            self._once(("refused", row.name, row.digest), "secret_file_refused", file=row.name, reason=str(refused))
            return False
        opened[row.name] = (row, mode, data)
        return True

    def _pair(
        self,
        keys: Keys,
        rows: dict[str, table.Row],
        local: dict[str, Local],
        changes: Changes,
        opened: dict[str, tuple[table.Row, int, bytes]],
    ) -> None:
        """The TLS certificate and key change as one: written both or neither; published only when the key is the
        certificate's (not while a renewal has written one and not yet the other)."""
        if any(name in opened for name in TLS_FILES):
            for name in TLS_FILES:
                row = rows.get(name)
                if name not in opened and row is not None and not self._open(keys, row, changes, opened):
                    for written in TLS_FILES:
                        opened.pop(written, None)
        held = [row for row in changes.saves if row.name in TLS_FILES]
        cert, key = (local.get(name) for name in TLS_FILES)
        if held and not (cert is not None and key is not None and pair_matches(cert.data, key.data)):
            changes.saves = [row for row in changes.saves if row not in held]
            for row in held:
                changes.agreed.pop(row.name, None)
            self._once(("pair", *(row.digest for row in held)), "secret_file_pair_mismatch", file=" ".join(TLS_FILES))
        for row in changes.saves:
            log.event("secret_file_published", file=row.name)

    def _write(self, opened: dict[str, tuple[table.Row, int, bytes]], changes: Changes) -> None:
        owner = files.owner(self._config.data_dir)
        for row, mode, data in opened.values():
            path = self._config.data_dir / row.name
            if not path.parent.exists():  # dkim/ or tls/, as provision makes them
                path.parent.mkdir(mode=0o700)
                if owner is not None:
                    os.chown(path.parent, *owner)
            files.replace(path, data, mode & MODE_MASK, owner)
            changes.agreed[row.name] = row.digest
            changes.written.append(row.name)
            log.event("secret_file_mirrored", file=row.name)

    def _remove(self, name: str, changes: Changes) -> None:
        (self._config.data_dir / name).unlink(missing_ok=True)
        changes.agreed[name] = None
        log.event("secret_file_removed", file=name)


def settle(config: Config, standby: bool) -> None:
    """The daemon's first look (jitaku.app), before it makes a missing key (provision), loads its keys, or forks
    the workers that load them: see Keeper.settle. A failure is logged: the daemon then serves with the files it
    has."""
    if not secret_path(config).exists():
        return
    from jitaku.store import Database

    try:
        database = Database(config.database_url)
        try:
            Keeper(config, standby).settle(database)
        finally:
            database.close()
    except Exception as error:  # the database restarting, a full disk: the daemon serves, the next look tries again
        log.event("secret_files_error", logging.WARNING, error=str(error))


async def keep(config: Config, database: Database, standby: bool) -> None:
    """The daemon's main process: a look now, then every PERIOD seconds."""
    keeper = Keeper(config, standby)
    while True:
        try:
            await keeper.once(database)
        except Exception as error:  # the daemon must outlive any one look; the next one tries again
            log.event("secret_files_error", logging.WARNING, error=str(error))
        await asyncio.sleep(PERIOD)


def publish_now(config: Config, database: Database) -> int:
    """The CLI's publish, on the primary (`standby allow`): how many rows it saved or deleted."""
    keeper = Keeper(config, standby=False)
    keys = keeper.keys()
    if keys is None:
        return 0
    changes = keeper.look(keys, database.read_now(table.rows))
    done = 0
    for unit in changes.units():
        try:
            with database.transaction() as connection:
                unit.apply(Tx.over(connection))
            done += len(unit.names)
        except Exception as error:  # a row the database refuses: the others are saved
            changes.unsaved(unit, error)
    keeper.remember(changes.agreed)
    return done


def mirror_now(config: Config, database: Database) -> Changes:
    """The CLI's mirror, on a standby (`standby setup`): the files it wrote, the rows it refused."""
    keeper = Keeper(config, standby=True)
    keys = keeper.keys()
    if keys is None:
        return Changes()
    changes = keeper.look(keys, database.query_now(table.rows))
    keeper.remember(changes.agreed)
    return changes
