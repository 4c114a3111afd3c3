"""The managed PostgreSQL cluster's life (`[database] managed = true`): made in DIR/postgres by `jitaku init
--database postgresql`, started by whatever needs the store, stopped by the last one to leave.

Who it runs as: PostgreSQL refuses root. A jitaku running as a user runs the cluster as that user. Run as root,
it runs it as `[run] user` when the config names one (the daemon becomes that user too), else as `postgres`, the
system user Debian's postgresql-common creates; DIR/postgres is that user's, and when it cannot pass through DIR
(root's, 0700), DIR's group becomes that user's group with search (x) permission alone (whatever the group
could do before is taken away: a 0750 DIR becomes 0710), which lets it reach DIR/postgres and read nothing else.
Sharing Debian's `postgres` user has a cost: the superusers of Debian's own clusters run as it too, and could
read DIR/postgres (jitaku.pgpass included); `[run] user` (or `jitaku init --service`, whose user is `jitaku`)
keeps the cluster to jitaku's own user.

Who starts and stops it: every process that uses it (the daemon, a CLI command) holds a shared flock on
DIR/postgres.users while it does; starts and stops happen under DIR/postgres.lock. Whoever finds the cluster down
starts it; whoever leaves last (its exclusive lock on postgres.users granted) stops it: fast, then immediate after
STOP_TIMEOUT. The kernel drops a lock with its holder, kill -9 included, so no lock outlives a process. A cluster
left running by a jitaku killed with -9 is adopted: its postmaster.pid names a live process whose working
directory is DIR/postgres. One left behind by a power cut names a dead process, or one that is not ours, and
stops nothing.

The role `jitaku` is the cluster's superuser (the cluster is jitaku's alone; a standby's base backup and
replication slots need one); its generated password is in DIR/postgres/jitaku.pgpass (0600), libpq's password
file, which the store's URL names (Config.database_url), so that jitaku.toml never holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import pwd
import re
import secrets
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from jitaku import files, log
from jitaku.config import PASSFILE_NAME, Config, Listen
from jitaku.errors import ClusterError

MIN_VERSION = 15
BINARIES = "/usr/lib/postgresql/*/bin"
PACKAGE = "postgresql"  # Debian's metapackage: its newest PostgreSQL, and the postgres user
START_TIMEOUT = 120  # seconds pg_ctl waits for a start, crash recovery after a power cut included
STOP_TIMEOUT = 15  # seconds a fast shutdown may take before an immediate one (systemd waits 30 s in all)
CONF_NAME = "jitaku.conf"  # rewritten before every start; postgresql.conf includes it
STARTUP_LOG = "log/startup.log"  # what the server says before its log collector runs (a port in use, say)
HBA_BEGIN = "# jitaku: [database] listen (rewritten at each start)"
HBA_END = "# jitaku: end"
SOCKET_PATH_MAX = 107  # sun_path, less its NUL
SERVER_PREFIX = re.compile(r"^.*?\] (FATAL|PANIC|LOG):\s*")  # "2026-12-07 07:54:47.490 UTC [30011] FATAL:  "


@dataclass(frozen=True)
class Binaries:
    directory: Path
    version: int

    def __getitem__(self, program: str) -> str:
        return str(self.directory / program)


def binaries(data: Path | None = None) -> Binaries:
    """The programs for the cluster in DATA: of the major version its PG_VERSION names, since another major's
    refuse its files (a dist-upgrade that adds postgresql-17 leaves a 15 cluster to 15's binaries). For a cluster
    not made yet (no DATA, or no PG_VERSION in it), the newest Debian installed, 15 or later: initdb's."""
    installed = _installed()
    major = _major(data) if data is not None else None
    if major is not None:
        if major not in installed:
            raise ClusterError(
                f"{data} is a PostgreSQL {major} cluster, and PostgreSQL {major} is not installed"
                f" (no {BINARIES.replace('*', str(major))}/pg_ctl): apt install postgresql-{major}"
            )
        return installed[major]
    usable = [found for version, found in installed.items() if version >= MIN_VERSION]
    if not usable:
        raise ClusterError(
            f"PostgreSQL {MIN_VERSION} or newer is not installed (nothing in {BINARIES}): apt install {PACKAGE}"
        )
    return max(usable, key=lambda found: found.version)


def _installed() -> dict[int, Binaries]:
    found = {}
    for directory in glob.glob(BINARIES):
        version = Path(directory).parent.name
        if version.isdigit() and os.access(Path(directory) / "pg_ctl", os.X_OK):
            found[int(version)] = Binaries(Path(directory), int(version))
    return found


def _major(data: Path) -> int | None:
    """The major version DATA's PG_VERSION names, None before initdb."""
    try:
        text = (data / "PG_VERSION").read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ClusterError(f"cannot read {data / 'PG_VERSION'}: {error.strerror or error}") from None
    if not text.isdigit():
        raise ClusterError(f"{data / 'PG_VERSION'} names no PostgreSQL major version: {text[:20]!r}")
    return int(text)


def account(config: Config) -> pwd.struct_passwd | None:
    """Whom the cluster runs as, when this process is root: the owner of DIR/postgres once it exists (a `[run] user`
    set later does not make it another's); before, `[run] user`, else `postgres`. None when this process is not
    root: it runs the cluster as itself."""
    if os.geteuid() != 0:
        return None
    with contextlib.suppress(FileNotFoundError, KeyError):
        owner = config.postgres_dir.stat().st_uid
        if owner != 0:
            return pwd.getpwuid(owner)
    name = config.settings.run.user or "postgres"
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise ClusterError(
            f"PostgreSQL refuses to run as root, and there is no user {name} to run it as: "
            f"apt install {PACKAGE} creates postgres, or set [run] user"
        ) from None


def create(config: Config) -> list[str]:
    """Make the cluster in DIR/postgres if it is not there; what was made, one line each.

    initdb works in DIR/postgres.part, renamed into place once whole: a cut in the middle leaves no half cluster
    that the next try would refuse to overwrite.
    """
    data = config.postgres_dir
    if (data / "PG_VERSION").exists():
        return []
    if data.exists() and any(data.iterdir()):
        raise ClusterError(f"{data} holds files but no PostgreSQL cluster (no PG_VERSION): move it away first")
    programs = binaries()
    user = account(config)
    reachable(config.data_dir, user)
    part = data.with_name(data.name + ".part")
    password = _initdb(config, programs, part, user)
    _finish(config, part, password, user)
    log.event("postgres_created", directory=str(data), version=programs.version, user=_name(user))
    return [f"PostgreSQL {programs.version} cluster {data} (run as {_name(user)})"]


def _initdb(config: Config, programs: Binaries, part: Path, user: pwd.struct_passwd | None) -> str:
    """A new cluster in PART, its `jitaku` role's password generated; that password, which initdb reads from a
    file of its own (never a command line, which ps shows)."""
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(mode=0o700)
    password_file = part.with_name(config.postgres_dir.name + ".password")
    password = secrets.token_urlsafe(32)
    try:
        write_private(password_file, password + "\n", user)
        give(part, user)
        run(
            [programs["initdb"], "-D", str(part), "-U", role_name(config), f"--pwfile={password_file}", "-E", "UTF8"]
            + ["--locale=C.UTF-8", "--lc-collate=C", "--data-checksums"]
            + ["--auth-local=peer", "--auth-host=scram-sha-256"],
            user,
            "initdb",
        )
    finally:
        password_file.unlink(missing_ok=True)
    return password


def _finish(config: Config, part: Path, password: str, user: pwd.struct_passwd | None) -> None:
    """PART made what jitaku runs (libpq's password file, the include of jitaku's settings, the log directory),
    then renamed to DIR/postgres."""
    data = config.postgres_dir
    write_private(part / PASSFILE_NAME, f"*:*:*:{role_name(config)}:{password}\n", user)
    with open(part / "postgresql.conf", "a", encoding="utf-8") as conf:
        conf.write(f"\n# jitaku's settings, from jitaku.toml's [database]\ninclude_if_exists = '{CONF_NAME}'\n")
    (part / "log").mkdir(mode=0o700)
    give(part / "log", user)
    if data.exists():
        data.rmdir()  # empty, as create() checked
    part.rename(data)
    fsync_directory(data.parent)


@contextlib.contextmanager
def using(config: Config) -> Iterator[None]:
    """The cluster running while the block runs: started if down (or adopted if up), stopped at the end when no
    other process uses it any more."""
    users = lock_file(config, "postgres.users")
    try:
        with control(config):
            fcntl.flock(users, fcntl.LOCK_SH)
            if not (config.postgres_dir / "PG_VERSION").exists():
                raise ClusterError(
                    f"{config.postgres_dir} holds no PostgreSQL cluster; run `jitaku init --database postgresql`"
                )
            adopted = _wait_until_settled(config)
            if adopted is None:
                start(config)
                ensure_database(config)
            else:
                log.event("postgres_adopted", directory=str(config.postgres_dir), pid=adopted)
        yield
    finally:
        with control(config):
            os.close(users)
            last = lock_file(config, "postgres.users")
            try:
                fcntl.flock(last, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.event("postgres_left_running", reason="another jitaku process uses it")
            else:
                stop(config)
            finally:
                os.close(last)


def start(config: Config) -> None:
    """Start the cluster with jitaku.toml's settings, and wait until it takes connections."""
    data = config.postgres_dir
    user = account(config)
    _write_settings(config, user)
    _forget_reused_pid(data)
    run(
        [
            binaries(data)["pg_ctl"],
            "-D",
            str(data),
            "-l",
            str(data / STARTUP_LOG),
            "-w",
            "-t",
            str(START_TIMEOUT),
            "start",
        ],
        user,
        "pg_ctl start",
        data / "log",
    )
    log.event("postgres_started", directory=str(data), pid=running(config))


def stop(config: Config) -> None:
    """Stop the cluster: a fast shutdown (sessions ended, a checkpoint), an immediate one if that takes more than
    STOP_TIMEOUT seconds (crash recovery at the next start, nothing committed lost)."""
    data = config.postgres_dir
    if running(config) is None:
        return
    user = account(config)
    pg_ctl = binaries(data)["pg_ctl"]
    try:
        run([pg_ctl, "-D", str(data), "-m", "fast", "-w", "-t", str(STOP_TIMEOUT), "stop"], user, "pg_ctl stop")
    except ClusterError as error:
        log.event("postgres_stop_slow", error=str(error))
        run([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "-t", str(STOP_TIMEOUT), "stop"], user, "pg_ctl stop")
    log.event("postgres_stopped", directory=str(data))


def control_data(config: Config) -> dict[str, str]:
    """What pg_controldata says of the cluster (read from global/pg_control, running or not), by its English
    labels: "Database cluster state", "Latest checkpoint location", ..."""
    data = config.postgres_dir
    result = subprocess.run(
        [binaries(data)["pg_controldata"], "-D", str(data)],
        capture_output=True,
        text=True,
        cwd="/",
        env={**os.environ, "LC_ALL": "C", "LANG": "C"},
        **_as(account(config)),
    )
    if result.returncode != 0:
        said = (result.stderr.strip().splitlines() or ["it said nothing"])[0]
        raise ClusterError(f"pg_controldata failed: {said}")
    found = {}
    for line in result.stdout.splitlines():
        label, colon, value = line.partition(":")
        if colon:
            found[label.strip()] = value.strip()
    return found


def running(config: Config) -> int | None:
    """The pid of the cluster's postmaster, if it runs: the pid its postmaster.pid names, if that process works
    in DIR/postgres (a pid reused after a power cut does not)."""
    return _postmaster(config.postgres_dir)[0]


def _postmaster(data: Path) -> tuple[int | None, list[str]]:
    """postmaster.pid's lines, read once, and its pid if that process runs in DATA."""
    fields = _pid_file(data)
    if not fields or not fields[0].isdigit():
        return None, fields
    pid = int(fields[0])
    try:
        return (pid if os.path.samefile(f"/proc/{pid}/cwd", data) else None), fields
    except OSError:  # gone, or another user's process (ours runs as us, or we are root)
        return None, fields


def _forget_reused_pid(data: Path) -> None:
    """Remove the lock files (postmaster.pid, the socket's) of a postmaster that is gone when they name a live
    process: after a power cut their pid may be any process's by now (or a zombie's, in a container whose init
    reaps none), and PostgreSQL would refuse to start while that process, of its own user, lives. Not while any
    process works in DATA: a postmaster killed with -9 leaves its backends running there for a moment, which
    PostgreSQL then sees through postmaster.pid's shared memory key, and must."""
    fields = _pid_file(data)
    if not fields or not fields[0].isdigit():
        return
    try:
        os.kill(int(fields[0]), 0)
    except ProcessLookupError:
        return  # a dead pid: PostgreSQL knows the files for stale itself
    except PermissionError:
        pass
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and os.path.samefile(entry / "cwd", data):
                return
    for lock in [data / "postmaster.pid", *data.glob(".s.PGSQL.*.lock")]:
        try:
            lock.unlink(missing_ok=True)
        except OSError as error:
            raise ClusterError(
                f"cannot remove {lock}, left by a PostgreSQL that is gone: {error.strerror or error}"
            ) from None
    log.event("postgres_lock_files_removed", directory=str(data), pid=fields[0], reason="the pid is not our postmaster")


def state(config: Config) -> str:
    """One word for a person: "running", "starting", "stopping", "stopped" or "absent"."""
    return _state(config.postgres_dir)[0]


def _state(data: Path) -> tuple[str, int | None]:
    """state()'s word and the postmaster's pid, from one reading of postmaster.pid."""
    if not (data / "PG_VERSION").exists():
        return "absent", None
    pid, fields = _postmaster(data)
    if pid is None:
        return "stopped", None
    status = fields[7].strip() if len(fields) > 7 else ""
    word = {"ready": "running", "standby": "running", "starting": "starting", "stopping": "stopping"}
    return word.get(status, "starting"), pid


def ensure_database(config: Config) -> None:
    """Create the database the URL names, when it is not there yet (a cut between initdb and its creation)."""
    import psycopg

    parts = urlsplit(config.settings.database.managed_url)
    name = unquote(parts.path.lstrip("/")) or role_name(config)
    conninfo: dict[str, Any] = {
        "host": parts.hostname,
        "port": parts.port or 5432,
        "user": role_name(config),
        "dbname": "postgres",
        "passfile": str(config.postgres_dir / PASSFILE_NAME),
    }
    try:
        with psycopg.connect(**conninfo, autocommit=True) as connection:
            if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                connection.execute(f'CREATE DATABASE "{name.replace(chr(34), chr(34) * 2)}"')
                log.event("postgres_database_created", database=name)
    except psycopg.Error as error:
        said = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ClusterError(f"cannot make the database {name} in {config.postgres_dir}: {said}") from None


def _wait_until_settled(config: Config) -> int | None:
    """The postmaster's pid once it takes connections (a start or a crash recovery under way is waited for),
    or None when none runs (a shutdown under way is waited out)."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        now, pid = _state(config.postgres_dir)
        if now in ("running", "stopped"):
            return pid
        if time.monotonic() > deadline:
            raise ClusterError(f"PostgreSQL in {config.postgres_dir} stayed {now} for {START_TIMEOUT} s")
        time.sleep(0.1)


def _write_settings(config: Config, user: pwd.struct_passwd | None) -> None:
    """jitaku.conf (where and how the server listens, its logs) and pg_hba.conf's lines for the listen
    addresses, from jitaku.toml as it is now."""
    data = config.postgres_dir
    listen = config.settings.database.listen
    socket_dir = str(data) if len(f"{data}/.s.PGSQL.{listen[0].port}.lock") <= SOCKET_PATH_MAX else ""
    settings = {
        "listen_addresses": ",".join(address.host for address in listen),
        "port": str(listen[0].port),
        "unix_socket_directories": socket_dir,  # for psql by hand; none when the path is too long for a socket
        "logging_collector": "on",
        "log_directory": "log",
        "log_filename": "postgresql-%a.log",  # a week of logs, each day's file overwritten the next week
        "log_truncate_on_rotation": "on",
        "log_rotation_age": "1d",
        "log_rotation_size": "0",
    }
    lines = [f"{key} = '{value}'" for key, value in settings.items()]
    write_private(
        data / CONF_NAME, "# written by jitaku at each start, from jitaku.toml\n" + "\n".join(lines) + "\n", user
    )
    hba = data / "pg_hba.conf"
    try:
        text = hba.read_text(encoding="utf-8")
    except OSError as error:
        raise ClusterError(f"cannot read {hba}: {error.strerror or error}") from None
    if HBA_BEGIN in text:
        begin = text.index(HBA_BEGIN)
        end = text.find(HBA_END, begin)
        if end < 0:
            raise ClusterError(f"{hba} has the line {HBA_BEGIN!r} without its {HBA_END!r}: put it back after the block")
        text = text[:begin] + text[end + len(HBA_END) + 1 :]
    text = without_default_replication(text)
    hosts = [address.host for address in listen if not _loopback_or_wildcard(address)]
    block = [HBA_BEGIN] + [f"host all all {_network(host)} scram-sha-256" for host in hosts] + [HBA_END]
    write_private(hba, text.rstrip("\n") + "\n" + "\n".join(block) + "\n", user)


def without_default_replication(text: str) -> str:
    """pg_hba.conf's TEXT without initdb's `replication all` lines (local and loopback): replication is let in
    only where `jitaku standby allow` said, for its role alone (jitaku.ha.standby)."""
    kept = [line for line in text.splitlines() if line.split()[1:3] != ["replication", "all"]]
    return "\n".join(kept) + "\n"


def _loopback_or_wildcard(address: Listen) -> bool:
    import ipaddress

    try:
        ip = ipaddress.ip_address(address.host)
    except ValueError:
        return address.host in ("localhost", "*")
    return ip.is_loopback or ip.is_unspecified


def _network(host: str) -> str:
    """HOST as pg_hba.conf's address: an IP alone as its own /32 or /128, a name as it is."""
    import ipaddress

    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    return f"{ip}/{ip.max_prefixlen}"


def role_name(config: Config) -> str:
    return unquote(urlsplit(config.settings.database.managed_url).username or "jitaku")


def _pid_file(data: Path) -> list[str]:
    try:
        return (data / "postmaster.pid").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def run(command: list[str], user: pwd.struct_passwd | None, what: str, logs: Path | None = None) -> None:
    """COMMAND as the cluster's user; a failure is a ClusterError with what the program said, or, given LOGS (the
    cluster's log directory), the first FATAL or PANIC line the server logged meanwhile."""
    before = _log_sizes(logs)
    result = subprocess.run(command, capture_output=True, text=True, cwd="/", **_as(user))
    if result.returncode != 0:
        said = [line.strip() for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        said = [
            line for line in said if not line.startswith(("waiting", "pg_ctl: could not start", "Examine", "WARNING:"))
        ]
        raise ClusterError(f"{what} failed: {_fatal(_logged_since(logs, before)) or (said + ['it said nothing'])[0]}")


def _fatal(lines: list[str]) -> str | None:
    """The server's first FATAL or PANIC line, without its time and pid, with the LOG line just before it that says
    why ("could not create any TCP/IP sockets" follows "could not bind ...: Address already in use")."""
    for index, line in enumerate(lines):
        if "FATAL:" in line or "PANIC:" in line:
            said = SERVER_PREFIX.sub("", line)
            pid = line.partition("]")[0].rpartition("[")[2]
            why = [earlier for earlier in lines[max(0, index - 4) : index] if f"[{pid}] LOG:" in earlier]
            return f"{said} ({SERVER_PREFIX.sub('', why[-1])})" if why else said
    return None


def _log_sizes(logs: Path | None) -> dict[Path, int]:
    if logs is None or not logs.is_dir():
        return {}
    return {path: path.stat().st_size for path in logs.glob("*.log")}


def _logged_since(logs: Path | None, sizes: dict[Path, int]) -> list[str]:
    lines = []
    for path, size in _log_sizes(logs).items():
        with contextlib.suppress(OSError), open(path, "rb") as file:
            file.seek(sizes.get(path, 0) if sizes.get(path, 0) <= size else 0)
            lines += file.read().decode(errors="replace").splitlines()
    return [line.strip() for line in lines]


def _as(user: pwd.struct_passwd | None) -> dict[str, Any]:
    """subprocess's arguments that run a program as USER (from root), or, for a process whose effective user is not
    its real one (`init --service` acts as the service's user), as the effective one: PostgreSQL refuses both
    root and a real user that differs from the effective."""
    if user is not None:
        return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    if os.getuid() != os.geteuid():
        return {"user": os.geteuid(), "group": os.getegid()}
    return {}


def _name(user: pwd.struct_passwd | None) -> str:
    return user.pw_name if user is not None else pwd.getpwuid(os.geteuid()).pw_name


def give(path: Path, user: pwd.struct_passwd | None) -> None:
    if user is not None:
        os.chown(path, user.pw_uid, user.pw_gid)


def write_private(path: Path, text: str, user: pwd.struct_passwd | None) -> None:
    """TEXT as PATH (0600, USER's), through a new file renamed over it: a cut leaves the old one or the new."""
    try:
        files.replace(path, text.encode(), 0o600, (user.pw_uid, user.pw_gid) if user is not None else None)
    except OSError as error:
        raise ClusterError(f"cannot write {path}: {error.strerror or error}") from None


def fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def reachable(data_dir: Path, user: pwd.struct_passwd | None) -> None:
    """Let USER pass through DATA_DIR to DATA_DIR/postgres (see the module's docstring), or refuse, naming the
    directory above it that USER cannot enter."""
    if user is None:
        return
    groups = set(os.getgrouplist(user.pw_name, user.pw_gid))
    directory = data_dir.resolve()
    info = directory.stat()
    if not _can_enter(info, user, groups):
        os.chown(directory, -1, user.pw_gid)
        os.chmod(directory, (stat.S_IMODE(info.st_mode) & ~stat.S_IRWXG) | stat.S_IXGRP)  # search, and no more
        log.event(
            "data_dir_group", directory=str(directory), group=user.pw_gid, reason=f"{user.pw_name} runs PostgreSQL"
        )
    for parent in directory.parents:
        if not _can_enter(parent.stat(), user, groups):
            raise ClusterError(
                f"the {user.pw_name} user, who runs PostgreSQL, cannot enter {parent}: "
                "choose a data directory outside any it may not enter"
            )


def _can_enter(info: os.stat_result, user: pwd.struct_passwd, groups: set[int]) -> bool:
    if info.st_uid == user.pw_uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid in groups:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


def lock_file(config: Config, name: str) -> int:
    try:
        return os.open(config.data_dir / name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as error:
        raise ClusterError(f"cannot open {config.data_dir / name}: {error.strerror or error}") from None


@contextlib.contextmanager
def exclusive(config: Config) -> Iterator[None]:
    """No other jitaku process uses the cluster, nor starts or stops it, while the block runs (a standby's setup
    replaces the cluster whole); refused at once, not waited for, when one does."""
    with control(config):
        users = lock_file(config, "postgres.users")
        try:
            try:
                fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ClusterError(
                    f"another jitaku command uses the cluster in {config.postgres_dir}; wait for it to end"
                ) from None
            yield
        finally:
            os.close(users)


@contextlib.contextmanager
def control(config: Config) -> Iterator[None]:
    """Only one process starts or stops the cluster at a time."""
    descriptor = lock_file(config, "postgres.lock")
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)
