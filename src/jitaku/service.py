"""`jitaku init --service`: the system user, the systemd units and their enabling (README: Security).

The daemon runs as the unprivileged user `jitaku` with one capability, binding ports below 1024; SMART is read
by a root helper on a timer (`jitaku smart collect`), so the daemon that parses strangers' input never gets the
raw disk access smartctl needs.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from jitaku import files
from jitaku.data_dir import SERVICE_DIR
from jitaku.privileges import user_name

USER = "jitaku"

UNIT_DIR = Path("/etc/systemd/system")
SERVICE = "jitaku.service"
SMART_SERVICE = "jitaku-smart.service"
SMART_TIMER = "jitaku-smart.timer"
ENABLED = (SERVICE, SMART_TIMER)
NOLOGIN = "/usr/sbin/nologin"
HOMES = ("/home", "/root", "/run/user")  # what ProtectHome=yes hides
UNIT_MODE = 0o644
DAEMON_STOP_SECONDS = 30  # the daemon's own shutdown: sessions told goodbye, the queue and workers stopped
# What systemd would read as something else in a unit line: whitespace splits words, %, $, quotes and
# backslashes are specifiers, variables and escapes. Paths holding them are refused rather than escaped.
PLAIN_PATH = re.compile(r"/[A-Za-z0-9._+/@:,=-]*")

SERVICE_UNIT = """\
# Written by `jitaku init --service`; running it again rewrites this file when it differs.
[Unit]
Description=jitaku home server: mail, lists, web, dynamic DNS and health
After=network-online.target
Wants=network-online.target

[Service]
Type=exec
ExecStart={jitaku} serve --dir {data_dir}
User={user}
Group={user}
Restart=on-failure
RestartSec=5s
# SIGTERM: every session hears its protocol's goodbye, and a client has a second to take it. To the daemon
# alone (mixed): a managed PostgreSQL runs in this unit's cgroup, and the daemon stops it once its own sessions
# are done; SIGTERM to all at once ended the daemon's database sessions in the middle of its shutdown.
KillSignal=SIGTERM
KillMode=mixed
TimeoutStopSec={stop_seconds}s
LimitNOFILE=65536
UMask=0077

# The one privilege the daemon keeps: binding ports below 1024{floating_why}.
AmbientCapabilities=CAP_NET_BIND_SERVICE{floating_caps}
CapabilityBoundingSet=CAP_NET_BIND_SERVICE{floating_caps}
NoNewPrivileges=yes

# Everything read-only but the data directory; no devices, no kernel knobs. Not MemoryDenyWriteExecute:
# ctypes (libffi) needs memory that is writable and executable.
ProtectSystem=strict
ReadWritePaths={data_dir}
ProtectHome={protect_home}
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
# AF_NETLINK: psutil lists the network interfaces through it{packet_why}
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK{packet}
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM

[Install]
WantedBy=multi-user.target
"""

SMART_SERVICE_UNIT = """\
# Written by `jitaku init --service`; running it again rewrites this file when it differs.
[Unit]
Description=jitaku: read the disks' SMART data for the daemon's smart check

[Service]
Type=oneshot
ExecStart={jitaku} smart collect --dir {data_dir}
# Root, and no PrivateDevices or ProtectClock (whose device rule would hide the disks): smartctl's passthrough
# needs CAP_SYS_RAWIO (SATA) or CAP_SYS_ADMIN (NVMe). Both stay here, never in the daemon.
CapabilityBoundingSet=CAP_SYS_RAWIO CAP_SYS_ADMIN CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER CAP_CHOWN
NoNewPrivileges=yes
TimeoutStartSec=5min
Nice=10
ProtectSystem=strict
ReadWritePaths={data_dir}
ProtectHome={protect_home}
PrivateTmp=yes
PrivateNetwork=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_UNIX
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
"""

SMART_TIMER_UNIT = """\
# Written by `jitaku init --service`; running it again rewrites this file when it differs.
[Unit]
Description=jitaku: read the disks' SMART data every 10 minutes

[Timer]
OnBootSec=1min
OnUnitActiveSec=10min

[Install]
WantedBy=timers.target
"""


class ServiceError(Exception):
    """What stops `init --service`; one line for a person."""


@dataclass(frozen=True)
class Installed:
    """The `jitaku` that runs now, as the units will run it."""

    program: Path  # ExecStart's
    needs: tuple[Path, ...]  # what the service user must be able to read to run it

    @property
    def protect_home(self) -> str:
        """ProtectHome's value: homes hidden, unless jitaku is installed in one (pyenv, a venv in ~)."""
        homes = [Path(home) for home in HOMES]
        return "read-only" if any(home in path.parents for path in self.needs for home in homes) else "yes"


def installed() -> Installed:
    """The absolute path of the `jitaku` that runs now, for the units' ExecStart.

    Its console script (what `pip install` made) when that is what runs; under `python -m jitaku`, the one
    beside this interpreter, else the one on PATH.
    """
    running = Path(os.path.abspath(sys.argv[0]))
    candidates = [running] if running.name == "jitaku" else []
    candidates.append(Path(sys.executable).parent / "jitaku")
    found = shutil.which("jitaku")
    if found:
        candidates.append(Path(os.path.abspath(found)))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            package = Path(os.path.realpath(__file__)).parent
            return Installed(candidate, (candidate, Path(os.path.realpath(sys.executable)), package))
    raise ServiceError("no `jitaku` program found to run as a service; install it (python3 -m pip install .)")


def check_reachable(install: Installed, data_dir: Path, account: pwd.struct_passwd) -> None:
    """Refuse an install or a data directory the service user cannot reach (pyenv in root's 0700 home, say),
    before the service fails at every start with an error in the journal."""
    with acting_as(account):
        for path in (*install.needs, data_dir):
            if not os.access(path, os.R_OK | os.X_OK, effective_ids=True):
                remedy = (
                    "choose a data directory outside any it may not enter (a home, say)"
                    if path == data_dir
                    else "install jitaku where every user may read it (as root, python3 -m pip install . puts it"
                    " in /usr/local)"
                )
                raise ServiceError(f"the {account.pw_name} user cannot reach {path}: {remedy}")


def plain(path: Path) -> str:
    """PATH as it may stand in a unit line."""
    text = str(path)
    if not PLAIN_PATH.fullmatch(text):
        raise ServiceError(f"{text!r} cannot stand in a systemd unit as it is: choose a path without spaces or %$\"'")
    return text


def stop_seconds() -> int:
    """How long systemd waits for the daemon's stop before SIGKILL: its own shutdown, then its managed cluster's
    (a fast shutdown, and an immediate one if that outlasts STOP_TIMEOUT)."""
    from jitaku.ha.cluster import STOP_TIMEOUT

    return DAEMON_STOP_SECONDS + 2 * STOP_TIMEOUT


def units(install: Installed, data_dir: Path, floating: bool = False) -> dict[str, str]:
    """Each unit's file name and text. FLOATING: the config has `[ha] address`, which the primary's daemon moves
    itself (`ip addr` needs CAP_NET_ADMIN; the ARP probe and the gratuitous ARP an AF_PACKET socket and
    CAP_NET_RAW); without it the daemon gets neither."""
    values = {
        "jitaku": plain(install.program),
        "data_dir": plain(data_dir),
        "user": USER,
        "protect_home": install.protect_home,
        "stop_seconds": str(stop_seconds()),
        "floating_why": ", and moving [ha] address (CAP_NET_ADMIN, CAP_NET_RAW)" if floating else "",
        "floating_caps": " CAP_NET_ADMIN CAP_NET_RAW" if floating else "",
        "packet_why": "; AF_PACKET: the floating address's ARP" if floating else "",
        "packet": " AF_PACKET" if floating else "",
    }
    return {
        SERVICE: SERVICE_UNIT.format(**values),
        SMART_SERVICE: SMART_SERVICE_UNIT.format(**values),
        SMART_TIMER: SMART_TIMER_UNIT.format(**values),
    }


def need_root() -> None:
    if os.geteuid() != 0:
        raise ServiceError("--service needs root: it adds the system user jitaku and writes systemd units (sudo)")


def ensure_user() -> tuple[pwd.struct_passwd, bool]:
    """The system user and group `jitaku`, made when missing (True) and else left as they are."""
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(USER), False
    useradd = shutil.which("useradd", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if useradd is None:
        raise ServiceError(f"useradd not found: add a system user {USER} with its own group, then run this again")
    _run(
        [
            useradd,
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            str(SERVICE_DIR),
            "--shell",
            NOLOGIN,
            USER,
        ]
    )
    return pwd.getpwnam(USER), True


def adopt(data_dir: Path, account: pwd.struct_passwd) -> int:
    """Give ACCOUNT what root owns in DATA_DIR (the directory made just now, or a data directory made by a
    `jitaku init` run as root before); return how many entries changed owner.

    Never through a link, and never a file with more than one name: in a directory the service user could
    write to before, such a file may be a hard link to one of root's.
    """
    owner = data_dir.lstat().st_uid
    if owner not in (0, account.pw_uid):
        raise ServiceError(
            f"{data_dir} belongs to {user_name(owner)}, not {account.pw_name}: give another --dir, "
            f"or chown -R {account.pw_name}:{account.pw_name} {data_dir}"
        )
    given = 0
    for root, directories, entries in os.walk(data_dir):
        names = [Path(root)] + [Path(root, name) for name in directories + entries]
        for path in names:
            status = path.lstat()
            if status.st_uid == 0 and (not stat.S_ISREG(status.st_mode) or status.st_nlink == 1):
                os.chown(path, account.pw_uid, account.pw_gid, follow_symlinks=False)
                given += 1
    return given


@contextlib.contextmanager
def acting_as(account: pwd.struct_passwd) -> Iterator[None]:
    """Run the block with ACCOUNT's effective user, group and groups, then be root again.

    What the block creates is the service user's from birth, and what it opens in the data directory it
    opens with that user's rights, as the daemon will.
    """
    user, group, groups = os.geteuid(), os.getegid(), os.getgroups()
    os.setgroups(os.getgrouplist(account.pw_name, account.pw_gid))
    os.setegid(account.pw_gid)
    os.seteuid(account.pw_uid)
    try:
        yield
    finally:
        os.seteuid(user)
        os.setegid(group)
        os.setgroups(groups)


@dataclass(frozen=True)
class Written:
    path: Path
    change: str  # "wrote", "rewrote" (it differed) or "unchanged"


def write_units(texts: dict[str, str], directory: Path = UNIT_DIR) -> list[Written]:
    """Each unit in DIRECTORY, written only when missing or different (through a new file renamed over it)."""
    written = []
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        path = directory / name
        try:
            old: str | None = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            old = None
        if old == text:
            written.append(Written(path, "unchanged"))
            continue
        files.replace(path, text.encode(), UNIT_MODE)
        written.append(Written(path, "wrote" if old is None else "rewrote"))
    return written


def enable() -> list[str]:
    """Enable (and, under a running systemd, start) the daemon and the SMART timer; sentences saying what
    was done, or what to run when this machine cannot do it."""
    systemctl = shutil.which("systemctl", path=os.environ.get("PATH", "") + ":/usr/bin:/bin")
    units = " ".join(ENABLED)
    if systemctl is None:
        return [
            "systemctl not found: on the machine that runs systemd, run",
            f"  systemctl daemon-reload && systemctl enable --now {units}",
        ]
    if Path("/run/systemd/system").is_dir():  # sd_booted(): systemd is PID 1 here
        _run([systemctl, "daemon-reload"])
        _run([systemctl, "enable", "--now", *ENABLED])
        return [f"enabled and started {units}"]
    _run([systemctl, "enable", *ENABLED])  # offline: makes the links in /etc/systemd/system/*.wants
    return [f"enabled {units}; systemd is not running here, so they start at the next boot"]


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        said = (result.stderr or result.stdout).strip().splitlines()
        raise ServiceError(f"{' '.join(command)} failed: {said[-1] if said else f'exit {result.returncode}'}")
