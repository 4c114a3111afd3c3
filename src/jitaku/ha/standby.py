"""Making the second box a streaming-replication standby of the first.

On the primary, `allow(config, host)`: the replication secret (generated once, DIR/ha/replication.secret), the
`replicator` role whose password is derived from it (replication_password), a pg_hba.conf line that lets HOST
connect as it for replication (in a marked block of its own, which the cluster's rewrite of its own block at each
start leaves alone), and the settings a primary needs (set with ALTER SYSTEM, in postgresql.auto.conf, which
PostgreSQL reads after postgresql.conf: they stay in force whatever is later edited in postgresql.conf, and
`ALTER SYSTEM RESET` is the way to change them).

On the standby, `setup(config, primary, secret_file, name)`: a base backup of the primary (pg_basebackup, WAL
streamed alongside, a physical replication slot on the primary named after this box so the primary keeps the
WAL this standby has not received yet) into DIR/postgres.part, then swapped into DIR/postgres. The old cluster
is moved aside to DIR/postgres.replaced-TIMESTAMP, not removed: a box made a standby may have held mail of its
own, and a command that sets up replication must not be the one that deletes a database for good; the person
removes it once satisfied (the output says where it is). Only the newest such copy is kept: a successful setup
removes older ones, and says so.

The secret itself stays in DIR/ha/replication.secret alone: the sealing key of the pair's secret files
(jitaku.ha.secret_files) derives from it, and a password file sits in DIR/postgres, readable by the cluster's user
and copied by base backups. The role's password is a value derived from it under a label of its own, which opens
nothing else; it never appears on a command line, in an environment or in postgresql.auto.conf: pg_basebackup and
the standby's WAL receiver read it from a libpq password file (0600, the cluster user's), which primary_conninfo
names. A failure before the swap leaves the standby's own cluster as it was.
"""

from __future__ import annotations

import contextlib
import ipaddress
import pwd
import re
import secrets
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from jitaku import files, log
from jitaku.config import PASSFILE_NAME, Config
from jitaku.errors import ClusterError
from jitaku.ha import box, cluster, peer, role

if TYPE_CHECKING:
    import psycopg

ROLE = "replicator"
SECRET_NAME = "replication.secret"
PASSWORD_INFO = b"jitaku replication password v1"  # HKDF's info: the role's password, and nothing else
REPLICATION_PASSFILE = "replication.pgpass"  # in DIR/postgres, for the standby's WAL receiver
HBA_BEGIN = "# jitaku: standby allow (replication), begin"  # neither contains cluster.HBA_END
HBA_FINISH = "# jitaku: standby allow (replication), finish"
# WAL a standby's slot may hold on the primary. Without a bound (PostgreSQL 15's default), a standby gone for good
# fills the primary's disk, and mail stops there; with it, a standby gone longer than this much WAL takes to write
# loses its slot and needs a fresh `jitaku standby setup`. 8 GB is days of a home server's mail.
MAX_SLOT_WAL_KEEP = "8GB"
SETTINGS = {
    "wal_level": "replica",
    "max_wal_senders": "10",
    "max_replication_slots": "10",
    "hot_standby": "on",
    "max_slot_wal_keep_size": MAX_SLOT_WAL_KEEP,
}
# libpq's keepalives and TCP timeout for pg_basebackup and the WAL receiver: a primary that vanishes (power cut,
# cable) is noticed in about half a minute, not after the kernel's two hours
KEEPALIVES = {"keepalives_idle": "10", "keepalives_interval": "5", "keepalives_count": "3", "tcp_user_timeout": "30000"}
RELOAD_TIMEOUT = 5.0  # seconds the postmaster may take to read its files after pg_reload_conf()
HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*")
HBA_KEYWORDS = {"all", "samehost", "samenet"}  # pg_hba.conf's words for many hosts, never one standby
STREAM_TIMEOUT = 60.0  # seconds a new standby may take to start streaming


class StandbyError(Exception):
    """Standby setup cannot be done; one line for a person."""


class SlotTaken(StandbyError):
    """The primary has a slot of this name already, which may be another standby's: left alone."""


@dataclass(frozen=True)
class Allowed:
    secret: Path
    made_secret: bool
    added: bool  # a new pg_hba.conf line
    restart_needed: list[str]  # settings that wait for the cluster's next start
    loopback_only: bool  # [database] listen is loopback only: no standby on another box can connect


def secret_path(config: Config) -> Path:
    return config.data_dir / "ha" / SECRET_NAME


def allow(config: Config, host: str) -> Allowed:
    """Let HOST (an IP address or a name) replicate from this box's cluster, which runs (cluster.using)."""
    from psycopg import sql

    network = hba_address(host)
    path = secret_path(config)
    with role.connect(config) as connection:
        if role.one(connection, "SELECT pg_is_in_recovery()"):
            raise StandbyError("this box is a standby: run `jitaku standby allow` on the primary")
        made = not path.exists()
        if made:
            _write_secret(path, secrets.token_urlsafe(32))
        secret = read_secret(path)
        password = replication_password(secret).encode()
        verifier = connection.pgconn.encrypt_password(password, ROLE.encode(), b"scram-sha-256").decode()
        exists = connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        connection.execute(
            sql.SQL(verb + " ROLE {} WITH LOGIN REPLICATION PASSWORD {}").format(
                sql.Identifier(ROLE), sql.Literal(verifier)
            )
        )
        for name, value in SETTINGS.items():
            connection.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
        with cluster.control(config):
            added = _add_hba_line(config, f"host replication {ROLE} {network} scram-sha-256")
        _reload(connection)
        pending = [str(row[0]) for row in connection.execute("SELECT name FROM pg_settings WHERE pending_restart")]
    loopback = all(_loopback(listen.host) for listen in config.settings.database.listen)
    log.event("standby_allowed", host=host, added=added, secret_made=made, loopback_only=loopback)
    return Allowed(path, made, added, pending, loopback)


def allow_replication(config: Config, host: str) -> bool:
    """Let HOST replicate from this box's cluster (its pg_hba.conf line alone: the role and the secret are the
    pair's already), on a primary or a standby about to be promoted; whether the line was new."""
    network = hba_address(host)
    with cluster.control(config):
        added = _add_hba_line(config, f"host replication {ROLE} {network} scram-sha-256")
    if added:
        with role.connect(config) as connection:
            _reload(connection)
    log.event("standby_allowed", host=host, added=added, secret_made=False)
    return added


def _reload(connection: psycopg.Connection[tuple[object, ...]]) -> None:
    """pg_reload_conf(), and wait until the postmaster has read the files (the reload is only a signal), so that
    pending_restart, asked next, is about the new settings."""
    before = role.one(connection, "SELECT pg_conf_load_time()")
    connection.execute("SELECT pg_reload_conf()")
    deadline = time.monotonic() + RELOAD_TIMEOUT
    while time.monotonic() < deadline:
        if role.one(connection, "SELECT pg_conf_load_time()") != before:
            return
        time.sleep(0.05)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.lower() == "localhost"


def hba_address(host: str) -> str:
    """HOST as pg_hba.conf's address field: an IP as its own /32 or /128, a name as it is."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not HOSTNAME.fullmatch(host) or len(host) > 253 or host.lower() in HBA_KEYWORDS:
            raise StandbyError(f"{host!r} is neither an IP address nor a host name") from None
        host = host.lower()
    return cluster._network(host)


def replication_password(secret: str) -> str:
    """The replicator role's password: derived from SECRET (HKDF-SHA256, a label of its own), so that a password
    file, the cluster or a base backup holding it holds nothing that opens the sealed secret files or signs the
    pair's requests. Hex: nothing a password file would need escaped."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=PASSWORD_INFO).derive(secret.encode()).hex()


def _password_file(path: Path, secret: str, user: pwd.struct_passwd | None) -> None:
    """PATH, a libpq password file for the replicator role (0600, USER's): its password, never the secret."""
    cluster.write_private(path, f"*:*:*:{ROLE}:{replication_password(secret)}\n", user)


def read_secret(path: Path) -> str:
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise StandbyError(f"cannot read {path}: {error.strerror or error}") from None
    if not secret or any(c in secret for c in ":\\\n\r'\" "):
        raise StandbyError(f"{path} does not hold a replication secret (one line, as `jitaku standby allow` makes)")
    return secret


def _add_hba_line(config: Config, line: str) -> bool:
    """LINE in our block of pg_hba.conf (made at its end if missing); whether it was new."""
    hba = config.postgres_dir / "pg_hba.conf"
    text = hba.read_text(encoding="utf-8")
    if HBA_BEGIN in text and HBA_FINISH in text:
        start, end = text.index(HBA_BEGIN), text.index(HBA_FINISH)
        lines = text[start:end].splitlines()[1:]
        before, after = text[:start], text[end + len(HBA_FINISH) :].lstrip("\n")
    else:
        lines, before, after = [], text.rstrip("\n") + "\n", ""
    if line in lines:
        return False
    block = "\n".join([HBA_BEGIN, *lines, line, HBA_FINISH]) + "\n"
    cluster.write_private(hba, before + block + after, cluster.account(config))
    return True


def _write_secret(path: Path, secret: str) -> None:
    """The secret, 0600, as the data directory's other secrets are: this process's (the CLI runs as the data
    directory's owner), through a new file renamed over it."""
    path.parent.mkdir(mode=0o700, exist_ok=True)
    cluster.write_private(path, secret + "\n", None)


def slot_name(given: str | None, hostname: str | None = None) -> str:
    """The replication slot's name, and the standby's application_name: --name, else this box's own hostname
    (the kernel's, never [server] hostname: that is the MX name, the same on both boxes of a pair), folded to
    what PostgreSQL allows in a slot's name ([a-z0-9_], 63 characters)."""
    raw = given or (hostname or socket.gethostname()).split(".")[0]
    name = re.sub(r"[^a-z0-9_]+", "_", raw.lower()).strip("_")[:63]
    if not name:
        raise StandbyError(f"cannot make a replication slot name of {raw!r}: give one with --name")
    return name


def parse_primary(text: str) -> tuple[str, int]:
    """HOST:PORT, [V6]:PORT."""
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^\s:\[\]]+):(\d+)", text)
    if match is None:
        raise StandbyError(
            f"--primary {text!r}: expected HOST:PORT (the primary's [database] listen), e.g. 192.168.1.10:5433"
        )
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if not 0 < port < 65536:
        raise StandbyError(f"--primary {text!r}: the port must be 1 to 65535")
    return host, port


def check_secret_file(path: Path) -> str:
    """The secret in PATH, which nobody else may read: a copy of it in a world-readable file is a leak."""
    files.check_private(path, StandbyError)
    return read_secret(path)


@dataclass(frozen=True)
class SetUp:
    slot: str
    replaced: Path  # where this box's old cluster went
    removed: list[Path]  # older moved-aside clusters, removed


def setup(config: Config, primary: str, secret_file: Path, name: str | None, replace: bool = False) -> SetUp:
    """Make this box's cluster a standby of PRIMARY. The caller holds the serve lock (no daemon runs). A slot of
    the same name on the primary is dropped only when the name was given (NAME) or REPLACE says so: else it may be
    another standby's, whose WAL it holds. PRIMARY's host is remembered (DIR/ha/peer_host): the box whose web
    `jitaku failover` asks to step down when no `[ha] peer` is set."""
    host, port = parse_primary(primary)
    secret = check_secret_file(secret_file)
    may_drop = name is not None or replace
    name = slot_name(name)
    data = config.postgres_dir
    if not (data / "PG_VERSION").exists():
        raise StandbyError(f"{data} holds no PostgreSQL cluster: run `jitaku init --database postgresql` first")
    user = cluster.account(config)
    part = data.with_name(data.name + ".part")
    made_slot = False  # once pg_basebackup has run, the slot may be there, even if it then failed
    with cluster.exclusive(config):
        cluster.stop(config)
        passfile = data.with_name(data.name + ".replication-pass")
        try:
            _password_file(passfile, secret, user)
            shutil.rmtree(part, ignore_errors=True)
            part.mkdir(mode=0o700)
            cluster.give(part, user)
            made_slot = True
            _base_backup(part, host, port, name, passfile, user, may_drop)
            _make_standby(config, part, host, port, name, secret, user)
        except BaseException as error:
            shutil.rmtree(part, ignore_errors=True)
            if made_slot and not isinstance(error, SlotTaken):
                _drop_slot(host, port, name, passfile, user)  # else it would keep WAL on the primary for nobody
            raise
        finally:
            passfile.unlink(missing_ok=True)
        replaced = _aside(data)
        data.rename(replaced)
        part.rename(data)
        cluster.fsync_directory(data.parent)
        removed = _remove_older(data, replaced)
    _write_secret(secret_path(config), secret)
    box.renew(config)  # a DIR cloned from the primary's disk holds its id: the pair's fences need two
    if peer.valid_host(host):  # where failover finds the primary's web (peer.peer_url)
        peer.remember_host(config, host)
    log.event("standby_set_up", primary=primary, slot=name, replaced=str(replaced), removed=len(removed))
    return SetUp(name, replaced, removed)


def _aside(data: Path) -> Path:
    """A new name for the old cluster: the time to the second, and a number after it when one is taken."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    candidate, number = data.with_name(f"{data.name}.replaced-{stamp}"), 1
    while candidate.exists():
        number += 1
        candidate = data.with_name(f"{data.name}.replaced-{stamp}-{number}")
    return candidate


def _remove_older(data: Path, kept: Path) -> list[Path]:
    """Every moved-aside cluster but KEPT, the newest: each is a whole database, and setups repeated would fill
    the disk."""
    older = sorted(p for p in data.parent.glob(f"{data.name}.replaced-*") if p != kept and p.is_dir())
    for path in older:
        shutil.rmtree(path)
        log.event("standby_replaced_removed", path=str(path))
    return older


def _drop_slot(host: str, port: int, name: str, passfile: Path, user: pwd.struct_passwd | None) -> None:
    """Drop the slot NAME on the primary, after a failed setup; a failure to is logged, the setup's own error
    being the one to tell."""
    dsn = conninfo(host, port, name, passfile) + " connect_timeout=10"
    drop = [cluster.binaries()["pg_receivewal"], "--drop-slot", "-S", name, "-d", dsn, "--no-password"]
    try:
        cluster.run(drop, user, f"dropping the replication slot {name} on {host}:{port}")
    except ClusterError as error:
        log.event("standby_slot_left", slot=name, primary=f"{host}:{port}", error=str(error))


def conninfo(host: str, port: int, name: str, passfile: Path) -> str:
    """libpq's connection string to the primary HOST:PORT as the replicator, as standby NAME, its password in
    PASSFILE."""
    values = {"host": host, "port": str(port), "user": ROLE, "passfile": str(passfile), "application_name": name}
    values.update(KEEPALIVES)
    return " ".join(f"{key}={_quoted(value)}" for key, value in values.items())


def _quoted(value: str) -> str:
    """A libpq conninfo value, quoted when it must be."""
    if value and not re.search(r"[\s'\\]", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _base_backup(
    part: Path, host: str, port: int, name: str, passfile: Path, user: pwd.struct_passwd | None, may_drop: bool
) -> None:
    programs = cluster.binaries()
    dsn = conninfo(host, port, name, passfile) + " connect_timeout=10"
    backup = [programs["pg_basebackup"], "-D", str(part), "-d", dsn, "-X", "stream", "-R"]
    backup += ["-C", "-S", name, "--checkpoint=fast", "--no-password"]
    try:
        cluster.run(backup, user, f"pg_basebackup from {host}:{port}")
    except ClusterError as error:
        if "already exists" not in str(error):
            raise StandbyError(str(error)) from None
        if not may_drop:
            raise SlotTaken(
                f"the primary already has a replication slot {name} (another standby's, or this box's from an "
                "earlier setup): give --replace to drop it, or another --name"
            ) from None
        # this box's slot, left by an earlier setup: its WAL is of no use to a new base backup
        drop = [programs["pg_receivewal"], "--drop-slot", "-S", name, "-d", dsn, "--no-password"]
        try:
            cluster.run(drop, user, f"dropping the old replication slot {name} on {host}:{port}")
            for leftover in part.iterdir():
                shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
            cluster.run(backup, user, f"pg_basebackup from {host}:{port}")
        except ClusterError as again:
            raise StandbyError(str(again)) from None


def _make_standby(
    config: Config, part: Path, host: str, port: int, name: str, secret: str, user: pwd.struct_passwd | None
) -> None:
    """The backup's recovery settings, our way: primary_conninfo names the password file, never the password."""
    if not (part / "standby.signal").exists():
        raise StandbyError("pg_basebackup made no standby.signal: is the primary's PostgreSQL 12 or newer?")
    role_pass = part / PASSFILE_NAME
    if not role_pass.exists():
        raise StandbyError(f"the primary's cluster has no {PASSFILE_NAME}: is it a cluster jitaku made?")
    ours = cluster.role_name(config)
    theirs = role_pass.read_text(encoding="utf-8").strip().split(":")[3:4]
    if theirs != [ours]:
        raise StandbyError(
            f"the primary's cluster is for role {theirs[0] if theirs else '?'}, this box's [database] url for {ours}"
        )
    # pg_basebackup leaves out postmaster.pid but not the lock files of the sockets in the data directory, which
    # name the primary's postmaster: on the same port, a pid alive here (a container, a reboot's reuse) would make
    # this cluster refuse to start
    for lock in part.glob(".s.PGSQL.*.lock"):
        lock.unlink()
    follow(config, part, host, port, name, secret, user)


def follow(
    config: Config, data: Path, host: str, port: int, name: str, secret: str, user: pwd.struct_passwd | None
) -> None:
    """Make the cluster in DATA (which becomes DIR/postgres, if it is not that already) a standby of HOST:PORT
    under NAME, at its next start: the replication password file (the password derived from SECRET, 0600,
    USER's), primary_conninfo naming that file, never the password, application_name and primary_slot_name NAME,
    standby.signal. `standby setup`
    (after pg_basebackup) and the switchover's re-join (jitaku.ha.rejoin, on the old primary's own cluster) both
    write these."""
    _password_file(data / REPLICATION_PASSFILE, secret, user)
    dsn = conninfo(host, port, name, config.postgres_dir / REPLICATION_PASSFILE)
    auto = data / "postgresql.auto.conf"
    ours = ("primary_conninfo", "primary_slot_name")
    kept = [line for line in auto.read_text(encoding="utf-8").splitlines() if not line.startswith(ours)]
    kept.append("primary_conninfo = '" + dsn.replace("'", "''") + "'")
    kept.append(f"primary_slot_name = '{name}'")  # slot_name() made it of [a-z0-9_]
    text = "\n".join(kept) + "\n"
    if secret in text or replication_password(secret) in text:
        raise StandbyError("postgresql.auto.conf holds the replication password; refusing to keep it there")
    cluster.write_private(auto, text, user)
    signal = data / "standby.signal"
    if not signal.exists():
        cluster.write_private(signal, "", user)


def wait_streaming(config: Config, timeout: float = STREAM_TIMEOUT) -> bool:
    """Whether the standby's WAL receiver streams within TIMEOUT seconds (the cluster running)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception), role.connect(config) as connection:
            row = connection.execute("SELECT status FROM pg_stat_wal_receiver").fetchone()
            if row is not None and row[0] == "streaming":
                return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
