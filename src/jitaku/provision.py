"""`jitaku init`: create what a data directory lacks (the DNS records to publish are `dns_records`)."""

from __future__ import annotations

import logging
import os
import ssl
import time
from pathlib import Path

from jitaku import config as config_module
from jitaku import log
from jitaku.config import Config
from jitaku.mail import dkim
from jitaku.store import Database
from jitaku.tls import CERT, KEY, ensure_self_signed, server_context
from jitaku.web.secret import SECRET_FILE, session_secret

# Modes set whatever the umask: the daemon's user alone reads the data directory and its secrets.
DATA_DIR_MODE = 0o700
PARENT_MODE = 0o755
PRIVATE_DIR_MODE = 0o700
SECRET_MODE = 0o600
PUBLIC_MODE = 0o644

TEMPLATE = """\
# jitaku configuration. Every key but `domains` has a default; delete what you do not need.
# Reference: the README. Restart `jitaku serve` after editing.

hostname = "{hostname}"          # the name we greet with; publish an A record and ask for a PTR
domains = ["{domain}"]

{run}
[smtp]                           # the MX: strangers deliver mail for your domains here
listen = [{smtp}]
max_message_size = 26214400      # bytes (SIZE, RFC 1870)
max_header_size = 262144         # bytes of a message's header section; a larger one is refused
max_header_fields = 1000         # fields in a message's header section
max_connections_per_ip = 50      # open connections from one address; every listener section below takes
max_connections = 1000           # these two (default 50 and 1,000), counted per process

[submission]                     # your own mail programs send here (AUTH required; STARTTLS)
listen = [{submission}]

[submissions]                    # submission over implicit TLS (RFC 8314)
listen = [{submissions}]

[imap]                           # mail programs read mail here (STARTTLS; passwords only over TLS off loopback)
listen = [{imap}]
max_mailboxes = 1000             # mailboxes one user may have, and subscribe to (past it: NO [LIMIT])
max_search_keys = 1000           # keys in one SEARCH (more: NO [LIMIT])
max_search_bytes = 1048576       # of each message, SEARCH reads this much
max_command_time = 60            # seconds a SEARCH or LIST may work (then NO [LIMIT])
write_timeout = 300              # seconds a client may leave our answers unread

[imaps]                          # IMAP over implicit TLS
listen = [{imaps}]

[pop3]                           # mail programs fetch mail here (STLS; passwords only over TLS off loopback)
listen = [{pop3}]
write_timeout = 300              # seconds a client may leave a message unread before it is cut off

[pop3s]                          # POP3 over implicit TLS
listen = [{pop3s}]

[web]
listen = [{web}]
url = ""                         # how the world reaches these pages (list unsubscribe links); empty: https://HOSTNAME
max_body_size = 65536            # bytes a request body may have; more is answered 413
header_timeout = 20              # seconds a client has to send a request's head
idle_timeout = 60                # seconds a request's body may stall
# metrics_token = ""             # 16+ characters Prometheus sends as "Authorization: Bearer ..." for /metrics

[login]                          # passwords on submission, IMAP, POP3 and the web login
max_failures = 5                 # failed logins of one user from one address within window; then that user waits
max_failures_per_address = 10    # failed logins from one address, whatever the users; then the address waits
window = 900                     # seconds a failed login counts
# hash_threads = 2               # threads per process that check passwords (argon2); default: one per core, at most 4
hash_queue = 16                  # tries that may wait for a thread; one more is told to come back later

# [relay]                        # absent: deliver straight to each domain's MX
# host = "auth.gate-on.net"      # e.g. MyDNS's relay when your ISP blocks outbound port 25
# port = 587
# username = "..."               # SASL (PLAIN, LOGIN, CRAM-MD5); leave out for an IP-authenticated relay
# password = "..."

[delivery]
port = 25                        # the port used on remote MX hosts
ipv6 = false                     # also over IPv6, first, to MX hosts with AAAA (Gmail wants a PTR for it)

[dns]
nameservers = []                 # empty: the system resolver; e.g. ["127.0.0.1:5353"]

[queue]
retry_min = 300                  # seconds before the first retry; doubles up to retry_max
retry_max = 3600
max_age = 432000                 # give up and bounce after five days

[dkim]
selector = "jitaku"
ed25519 = false                  # also sign with Ed25519 (RFC 8463), selector SELECTORe

[database]
url = ""                         # empty: jitaku.db here, or with managed the cluster on listen; or postgresql://...

# [public_ip]                    # where the dynamic DNS updater learns our address
# sources = ["https://api.ipify.org", "https://ifconfig.me/ip", "https://icanhazip.com"]
# interval = 60                  # seconds between checks

# [[ddns]]                       # one table per name kept pointing at us
# provider = "mydns"             # mydns | dyndns2 | cloudflare
# name = "example.org"
# username = "mydns123456"       # MyDNS master ID / DynDNS2 user
# password_file = "mydns.secret" # a file of its own, 0600 (or password = "...")
# ipv6 = false

[health]
enabled = true
interval = 60                    # seconds between check rounds; [health.NAME] interval for one check
# [health.raid]
# mdstat = "/proc/mdstat"
# [health.smart]
# smartctl = "smartctl"          # Debian: apt install smartmontools
# devices = []                   # empty: what `smartctl --scan` finds
# [health.diskage]
# service_life_hours = 17520     # two years of 24x7
# [health.backup]               # with [backup] target: hours since the last good backup and restore drill
# warning_hours = 36             # critical_hours = 72
# verify_warning_hours = 192     # 8 days: a week's drill and a day's margin; verify_critical_hours = 360

[alerts]                         # a channel that works when our own mail does not
urls = []                        # apprise URLs: "ntfys://ntfy.sh/TOPIC", "tgram://TOKEN/CHAT", "json://host/path"
# heartbeat_url = ""             # a healthchecks.io-style URL pinged every heartbeat_interval seconds
# language = "en"                # or "ja"

# [acme]                         # certificates by ACME for every listener, renewed 30 days before expiry
# email = "you@example.org"      # set: on; the CA's contact
# directory = "letsencrypt"      # or "letsencrypt-staging", or an ACME directory's https:// URL
# challenge = "http-01"          # http-01 (port 80 reaches this box) | dns-01 (through a cloudflare [[ddns]] table)
# names = []                     # default: the mail hostname, the web URL's host, mta-sts.DOMAIN

# [backup]                       # encrypted snapshots through restic (Debian: apt install restic)
# target = "/mnt/backup/jitaku"  # set: on; a restic repository: a path, "sftp:user@host:/path", "s3:URL/BUCKET"
# ssh_key = ""                   # sftp: a private key (0600) and known_hosts file, relative to this directory
# ssh_known_hosts = ""           # ("": ssh's own); ssh_key = "backup/id_ed25519", ssh_known_hosts = "backup/known"
# credentials_file = ""          # s3: a 0600 file of AWS_ACCESS_KEY_ID=... and AWS_SECRET_ACCESS_KEY=... lines
# password_file = "backup.secret"  # `jitaku backup init` makes it; keep a copy elsewhere: without it, no restore
# every = 86400                  # seconds between backups; 0: only `jitaku backup now`
# verify_every = 604800          # seconds between restore drills (`jitaku backup verify`); 0: none
# keep_daily = 7                 # snapshots kept: one a day for 7 days, a week for 4 weeks, a month for 12
# keep_weekly = 4
# keep_monthly = 12

# [ha]                           # a primary/standby pair; without address, failover moves no address
# address = "192.168.1.10/24"    # the LAN address the router forwards 25/80/443 to: the primary holds it
# interface = "eth0"             # where to hold it (needed with address)
# sync_timeout = 10              # seconds commits wait for a silent standby before replication turns asynchronous
# peer = "http://192.168.1.11:8080"  # the other box's web; default: the primary's host (standby setup), our web port
"""


def _listen(addresses: list[str]) -> str:
    return ", ".join(f'"{a}"' for a in addresses)


def _everywhere(*ports: int) -> list[str]:
    """Every address of this host on PORTS, IPv4 and IPv6: many home lines (IPoE with DS-Lite or MAP-E in
    Japan) give a server no inbound IPv4 port at all, but a global IPv6 address."""
    return [address for port in ports for address in (f"0.0.0.0:{port}", f"[::]:{port}")]


RUN_AS = """\
[run]                            # who the daemon runs as once its listeners are bound: no process stays root
user = "{user}"                  # written by `init --service`; its systemd unit starts it as this user too
"""
RUN_AS_WHOEVER = """\
# [run]                          # absent: the daemon runs as whoever starts it, root included
# user = "jitaku"                # a system user to run as once the listeners are bound (`init --service`)
"""


def config_text(
    path: Path,
    domain: str,
    hostname: str | None,
    public: bool,
    run_user: str | None = None,
    managed_database: bool = False,
) -> str:
    """A commented config for DOMAIN, to be written as PATH; RUN_USER, when given, is the `[run] user` the daemon
    drops to; MANAGED_DATABASE: the store in a PostgreSQL cluster of jitaku's own (jitaku.ha.cluster)."""
    text = TEMPLATE.format(
        hostname=hostname or f"mail.{domain}",
        domain=domain,
        run=RUN_AS.format(user=run_user) if run_user else RUN_AS_WHOEVER,
        smtp=_listen(_everywhere(25) if public else ["127.0.0.1:2525"]),
        submission=_listen(_everywhere(587) if public else ["127.0.0.1:2587"]),
        submissions=_listen(_everywhere(465) if public else []),
        imap=_listen(_everywhere(143) if public else ["127.0.0.1:2143"]),
        imaps=_listen(_everywhere(993) if public else []),
        pop3=_listen(_everywhere(110) if public else ["127.0.0.1:2110"]),
        pop3s=_listen(_everywhere(995) if public else []),
        web=_listen(_everywhere(443, 80) if public else ["127.0.0.1:8025"]),
    )
    if managed_database:
        from jitaku.ha.config_text import managed_database as with_cluster

        text = with_cluster(text, path).text
    config_module.parse(text, path)  # the template must always be valid
    return text


def write_config(data_dir: Path, text: str) -> Path:
    """TEXT (config_text's) as DATA_DIR's config, the directory made if missing; never over one that exists."""
    path = data_dir / config_module.CONFIG_NAME
    make_data_dir(data_dir)
    # never overwrite; 0600 because a relay password may be added to it
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)
    return path


def make_data_dir(data_dir: Path) -> None:
    """Create DATA_DIR (0700) and its missing parents (0755), whatever the umask.

    `mkdir -p` leaves parents to the umask: under umask 000 a world-writable parent lets anyone put a
    data directory of their own, with their own config, where ours was.
    """
    missing = []
    path = data_dir
    while not path.exists():
        missing.append(path)
        path = path.parent
    for path in reversed(missing):
        path.mkdir(mode=0o700, exist_ok=True)  # never more open than 0700, even for a moment
        path.chmod(DATA_DIR_MODE if path == data_dir else PARENT_MODE)


def _private_dir(path: Path) -> None:
    if not path.exists():
        path.mkdir(mode=0o700)
        path.chmod(PRIVATE_DIR_MODE)  # mkdir's mode is cut by the umask: under 0277 we could not write in it


def complete(config: Config) -> list[str]:
    """Create the database, DKIM keys and TLS certificate if missing; return what was made."""
    settings = config.settings
    made = []
    database_file = config.data_dir / "jitaku.db"
    if not settings.database.managed_url and not database_file.exists():
        # SQLite would make it 0644 less the umask; it holds password hashes and everyone's mail,
        # and its -wal and -shm files take the mode of this one
        os.close(os.open(database_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_MODE))
        database_file.chmod(SECRET_MODE)
    Database(config.database_url).close()
    made.append(f"database {config.database_url}")
    _private_dir(config.dkim_dir)
    for domain in settings.domains:
        for path in dkim.ensure_keys(config.dkim_dir, domain, settings.dkim.selector, settings.dkim.ed25519):
            made.append(f"DKIM key {path}")
    _private_dir(config.tls_dir)
    aside = set_aside_broken_pair(config.tls_dir)
    if aside:
        made.append(f"TLS pair that does not load moved to {aside}")
    if ensure_self_signed(config.tls_dir, settings.mail_hostname):
        made.append(f"self-signed TLS certificate {config.tls_dir / 'cert.pem'}")
    # made here, before the daemon says it listens, not by the web's first page: a disk full by then would stop it
    if not (config.data_dir / SECRET_FILE).exists():
        session_secret(config.data_dir)
        made.append(f"web cookie key {config.data_dir / SECRET_FILE}")
    return made


def set_aside_broken_pair(tls_dir: Path) -> str | None:
    """Move TLS_DIR's cert.pem and key.pem aside (NAME.broken-TIME) when they do not load as a pair, so that a
    self-signed one is made in their place and the daemon starts: a power cut between a renewal's two renames, or a
    certificate copied without its key, would otherwise stop every listener, mail with the web. What was moved, or
    None. ACME (its renewal is due for a self-signed certificate) or a person puts a real pair back."""
    cert, key = tls_dir / CERT, tls_dir / KEY
    if not (cert.exists() and key.exists()):
        return None
    try:
        server_context(tls_dir)
        return None
    except ssl.SSLError as error:  # not an OSError for a file unreadable: that one stays the person's to fix
        reason = error.reason or str(error)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    moved = []
    for path in (key, cert):
        target = path.with_name(f"{path.name}.broken-{stamp}")
        path.rename(target)
        moved.append(str(target))
    log.event("tls_pair_broken", logging.WARNING, reason=reason, moved=", ".join(moved))
    return ", ".join(moved)


def tighten(config: Config) -> list[str]:
    """Take away what others may do with the data directory and the secrets in it, whoever loosened
    them (a 0777 directory made beforehand, umask 000, a copy with `cp -r`); one sentence per change.

    Only before this process opens the database: it opens and closes jitaku.db, and closing any descriptor
    of a file drops every POSIX lock the process holds on it, SQLite's included ("How To Corrupt An SQLite
    Database File", §2.2). Its cost does not grow with the database: a stat and a chmod per file."""
    data_dir = config.data_dir
    wanted: list[tuple[Path, int, int]] = [  # (path, bits that must not be set, the mode then)
        (data_dir, 0o027, DATA_DIR_MODE),  # 0750 is kept: a backup group may read it
        (config.dkim_dir, 0o077, PRIVATE_DIR_MODE),
        (config.tls_dir, 0o077, PRIVATE_DIR_MODE),
        (config.tls_dir / "key.pem", 0o177, SECRET_MODE),
        (config.tls_dir / "cert.pem", 0o133, PUBLIC_MODE),
        (data_dir / config_module.CONFIG_NAME, 0o177, SECRET_MODE),  # a relay or DDNS password may be in it
    ]
    wanted += [(data_dir / name, 0o177, SECRET_MODE) for name in ("jitaku.db", "jitaku.db-wal", "jitaku.db-shm")]
    wanted += [(data_dir / SECRET_FILE, 0o177, SECRET_MODE)]
    if config.dkim_dir.is_dir():
        wanted += [(key, 0o177, SECRET_MODE) for key in sorted(config.dkim_dir.glob("*.key"))]
    changes = []
    for path, forbidden, mode in wanted:
        # Inside, a symbolic link is never followed: in a directory others could write to, one may point
        # at /etc/shadow. The data directory itself is the one the owner named, link or not. O_NOFOLLOW
        # looks at the last name only, so nothing below a dkim/ or tls/ that is a link is touched (the link
        # is reported); the data directory is tightened first, so nobody else can put one there in between.
        if path.parent != data_dir and path.parent.is_symlink():
            continue
        flags = os.O_RDONLY | os.O_NONBLOCK | (0 if path == data_dir else os.O_NOFOLLOW)
        try:
            descriptor = os.open(path, flags)
        except FileNotFoundError:
            continue
        except OSError as error:  # ELOOP: a link where a file of ours should be
            changes.append(f"could not check {path}: {error.strerror}")
            continue
        try:
            was = os.fstat(descriptor).st_mode & 0o777
            if was & forbidden:
                os.fchmod(descriptor, mode)
                changes.append(f"tightened {path} from {was:04o} to {mode:04o}")
        except OSError as error:
            changes.append(f"could not tighten {path} to {mode:04o}: {error.strerror}")
        finally:
            os.close(descriptor)
    return changes
