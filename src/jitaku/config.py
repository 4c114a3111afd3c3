"""jitaku.toml -> validated, frozen settings.

Every key has a default except `domains`, so a hand-written file with only what
it needs works. A bad file is reported as one line naming the file, the line,
the key and what was expected; a bad file changes nothing.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from jitaku.resolver import Nameserver, parse_nameserver
from jitaku.sftp_target import parse_sftp

CONFIG_NAME = "jitaku.toml"
PASSFILE_NAME = "jitaku.pgpass"  # in the managed cluster's directory: libpq's password file, 0600


class ConfigError(Exception):
    """A config file that cannot be used; the message is meant for a person."""


@dataclass(frozen=True)
class Listen:
    """One "host:port" a listener binds to."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen(value: str, any_port: bool = False) -> Listen:
    """Parse "host:port" or "[v6]:port". With ANY_PORT, port 0 too: a listener bound to whatever port the
    kernel gives (the daemon writes the ports it got to DIR/ports.json: ports.py)."""
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^:\[\]]+):(\d+)", value.strip())
    if not match:
        raise ValueError(f'expected "host:port", got {value!r}')
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    lowest = 0 if any_port else 1
    if not lowest <= port < 65536:
        raise ValueError(f"port must be {lowest}-65535, got {port}")
    return Listen(host, port)


def _listen_list(value: Any) -> tuple[Listen, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ValueError('expected a list of "host:port" strings')
    result = []
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f'expected "host:port" strings, got {item!r}')
        result.append(parse_listen(item, any_port=True))
    return tuple(result)


def _nameserver_list(value: Any) -> tuple[Nameserver, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError('expected a list of "ip" or "ip:port" strings')
    return tuple(parse_nameserver(v) for v in value)


ListenList = Annotated[tuple[Listen, ...], BeforeValidator(_listen_list)]
NameserverList = Annotated[tuple[Nameserver, ...], BeforeValidator(_nameserver_list)]

_TOKEN = re.compile(r"[\x21-\x7e]{16,}")  # what an HTTP header carries as is
_DOMAIN = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}")


def _domain(value: str) -> str:
    value = value.strip().lower()
    if not _DOMAIN.fullmatch(value):
        raise ValueError(f"expected a domain name like example.org, got {value!r}")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Listener(_Section):
    """What every listener section takes: bounds on the connections it holds open."""

    max_connections_per_ip: int = Field(default=50, ge=1, description="open connections from one address")
    max_connections: int = Field(default=1000, ge=1, description="open connections in all")


class SmtpSettings(_Listener):
    listen: ListenList = (Listen("127.0.0.1", 2525),)
    max_message_size: int = Field(default=26_214_400, gt=0)
    max_header_size: int = Field(default=262_144, ge=1024, description="bytes of a message's header section")
    max_header_fields: int = Field(default=1000, ge=100, description="fields in a message's header section")
    max_recipients: int = Field(default=100, ge=100, description="RFC 5321 §4.5.3.1.8: at least 100")
    timeout: float = Field(default=300.0, gt=0, description="idle seconds before a session is closed")
    workers: int = Field(default=1, ge=1, le=64, description="processes accepting SMTP (MX and submission)")


class SubmissionSettings(_Listener):
    listen: ListenList = (Listen("127.0.0.1", 2587),)


class SubmissionsSettings(_Listener):
    """Implicit-TLS submission (port 465, RFC 8314)."""

    listen: ListenList = ()


class ImapSettings(_Listener):
    """IMAP with STARTTLS (RFC 3501); passwords only over TLS, except from loopback."""

    listen: ListenList = (Listen("127.0.0.1", 2143),)
    sessions_per_user_ip: int = Field(
        default=10, ge=1, description="IMAP and IMAPS sessions a user may have open from one address"
    )
    max_mailboxes: int = Field(
        default=1000,
        ge=10,
        description="mailboxes one user may have, and names they may subscribe to (NO [LIMIT] past it)",
    )
    max_search_keys: int = Field(default=1000, ge=10, description="keys in one SEARCH program (NO [LIMIT] past it)")
    max_search_bytes: int = Field(
        default=1_048_576, ge=65_536, description="bytes of each message a SEARCH reads: text past them is not searched"
    )
    max_command_time: float = Field(
        default=60.0, gt=0, description="seconds of work a SEARCH or LIST may take (NO [LIMIT] past them)"
    )
    write_timeout: float = Field(
        default=300.0, gt=0, description="seconds a client may leave our responses unread before it is cut off"
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="processes serving IMAP and IMAPS (each counts sessions_per_user_ip and the connection limits"
        " on its own)",
    )


class ImapsSettings(_Listener):
    """IMAP over implicit TLS (port 993, RFC 8314)."""

    listen: ListenList = ()


class Pop3Settings(_Listener):
    """POP3 with STLS (RFC 1939, 2595); passwords only over TLS, except from loopback."""

    listen: ListenList = (Listen("127.0.0.1", 2110),)
    sessions_per_user_ip: int = Field(
        default=10, ge=1, description="POP3 and POP3S sessions a user may have open from one address"
    )
    write_timeout: float = Field(
        default=300.0, gt=0, description="seconds a client may leave our responses unread before it is cut off"
    )


class Pop3sSettings(_Listener):
    """POP3 over implicit TLS (port 995, RFC 8314)."""

    listen: ListenList = ()


class WebSettings(_Listener):
    listen: ListenList = (Listen("127.0.0.1", 8025),)
    # How the world reaches our pages (list unsubscribe links); default https://HOSTNAME
    url: str = ""
    # The status page and dashboard open without a login to clients on this machine's loopback
    trust_loopback: bool = True
    # Bytes a request's body may have, on every route; more is answered 413 (none of our forms comes near)
    max_body_size: int = Field(default=65536, gt=0)
    header_timeout: float = Field(default=20.0, gt=0, description="seconds a client has to send a request's head")
    idle_timeout: float = Field(default=60.0, gt=0, description="seconds a request's body may stall")
    # What Prometheus sends as `Authorization: Bearer TOKEN` to read /metrics (it cannot log in); empty: no /metrics
    metrics_token: str = ""

    @field_validator("metrics_token")
    @classmethod
    def _metrics_token(cls, value: str) -> str:
        if value and not _TOKEN.fullmatch(value):
            raise ValueError(
                "expected 16 or more characters, printable ASCII without spaces (it alone guards /metrics)"
            )
        return value


MAX_HASH_THREADS = 4


class LoginSettings(_Section):
    """Passwords, for every protocol that takes one (submission, IMAP, POP3, the web login).

    A try counts against the limits from the moment it starts, so parallel tries get no more than
    sequential ones. Five per user and address is fail2ban's maxretry; ten per address lets two devices
    with an old password (each stopped at five) share a household's address before it locks, and bounds
    a spray of many users from one address to ten checks a window.
    """

    max_failures: int = Field(default=5, ge=1, description="failed logins of one user from one address")
    max_failures_per_address: int = Field(default=10, ge=1, description="failed logins from one address, any user")
    window: float = Field(default=900.0, gt=0, description="seconds a failed login counts against the limits")
    # argon2 computes outside Python's lock: each core checks a password at a time (one thread made ten mail
    # clients logging in at once wait 350 ms each, issue 20); more than MAX_HASH_THREADS would take memory
    # (19 MiB each) and the cores the mail needs
    hash_threads: int = Field(
        default_factory=lambda: min(os.cpu_count() or 1, MAX_HASH_THREADS),
        ge=1,
        le=8,
        description="threads that check passwords (argon2), per process; default: one per core, at most 4",
    )
    hash_queue: int = Field(default=16, ge=0, description="tries that may wait for a thread; more are told to retry")


class RelaySettings(_Section):
    host: str
    port: int = Field(default=587, gt=0, lt=65536)
    username: str | None = None
    password: str | None = None

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        value = value.strip().strip("[]")
        if not value:
            raise ValueError("expected a host name or address")
        return value


class DeliverySettings(_Section):
    port: int = Field(default=25, gt=0, lt=65536)
    timeout: float = Field(default=60.0, gt=0)
    concurrency: int = Field(default=50, gt=0)  # deliveries at once, each to one domain (Postfix runs up to 100)
    ipv6: bool = Field(default=False, description="deliver over IPv6 to MX hosts with AAAA records")


class DnsSettings(_Section):
    nameservers: NameserverList = ()


class QueueSettings(_Section):
    retry_min: float = Field(default=300.0, gt=0)
    retry_max: float = Field(default=3600.0, gt=0)
    max_age: float = Field(default=432_000.0, gt=0)


class DkimSettings(_Section):
    selector: str = "jitaku"
    ed25519: bool = False

    @field_validator("selector")
    @classmethod
    def _selector(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}", value):
            raise ValueError(f"expected a DNS label like 'jitaku', got {value!r}")
        return value


def _database_listen(value: Any) -> tuple[Listen, ...]:
    """The managed cluster's addresses: PostgreSQL listens on one port, on every address it is given."""
    listen = tuple(parse_listen(str(address)) for address in _listen_list(value))  # port 0 refused here
    if not listen:
        raise ValueError('expected at least one "host:port"')
    ports = sorted({address.port for address in listen})
    if len(ports) > 1:
        raise ValueError(f"PostgreSQL listens on one port for all its addresses; got {', '.join(map(str, ports))}")
    return listen


class DatabaseSettings(_Section):
    """Where the store is: SQLite in the data directory (url empty), or PostgreSQL.

    `managed`: jitaku runs the PostgreSQL cluster itself, in DIR/postgres, on `listen` (jitaku.ha.cluster); its
    password lives in a file there, never in `url`. `jitaku init` writes the url (CONTRACTS); one left empty is
    derived from `listen` (managed_url).
    """

    managed: bool = False  # before url, which is checked against it
    listen: Annotated[tuple[Listen, ...], BeforeValidator(_database_listen)] = (Listen("127.0.0.1", 5433),)
    url: str = ""  # after listen, which a managed url must name

    @field_validator("url")
    @classmethod
    def _url(cls, value: str, info: ValidationInfo) -> str:
        if not info.data.get("managed") or not value:
            return value
        parts = urlsplit(value)
        if parts.scheme.partition("+")[0] not in ("postgresql", "postgres"):
            raise ValueError("managed = true runs PostgreSQL: expected postgresql://... (or nothing)")
        if parts.password is not None:
            raise ValueError("managed = true keeps the password in a file in DIR/postgres; leave it out of the url")
        listen = info.data.get("listen") or ()
        reached = {connect_address(address) for address in listen}
        try:
            named = str(Listen(parts.hostname or "", parts.port or 5432))
        except ValueError:  # a port that is not a number
            named = parts.netloc.rpartition("@")[2]
        if reached and named not in reached:
            raise ValueError(
                f"managed = true: the url names {named}, where the managed cluster does not listen"
                f" ({', '.join(sorted(reached))}); leave url empty and jitaku derives it from listen"
            )
        return value

    @property
    def managed_url(self) -> str:
        """`url`, or for a managed cluster without one the URL of its `jitaku` database on its first address."""
        if self.url or not self.managed:
            return self.url
        return f"postgresql://jitaku@{connect_address(self.listen[0])}/jitaku"


def connect_address(listen: Listen) -> str:
    """Where a client on this machine reaches a server listening on LISTEN: a wildcard is reached on loopback."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "*": "127.0.0.1"}.get(listen.host, listen.host)
    return str(Listen(host, listen.port))


class DdnsRecord(_Section):
    """One `[[ddns]]` table: a name kept pointing at our public address."""

    provider: Literal["mydns", "dyndns2", "cloudflare"]
    name: str
    username: str = ""  # MyDNS master ID, DynDNS2 user; Cloudflare needs none
    password: str = ""  # or the API token for Cloudflare
    password_file: str = ""  # instead of password: a file of its own, 0600, relative to the data directory
    zone: str = ""  # Cloudflare: the zone holding NAME (default: its organizational domain)
    ipv4: bool = True
    ipv6: bool = False
    endpoint: str = ""  # the provider's URL, for self-hosted DynDNS2 servers and for tests
    verify_nameservers: NameserverList = ()  # default: the zone's authoritative servers
    keepalive: float | None = Field(default=None, gt=0)  # seconds; default: the provider's own

    @field_validator("name", "zone")
    @classmethod
    def _names(cls, value: str) -> str:
        return _domain(value) if value else value

    @model_validator(mode="after")
    def _credentials(self) -> DdnsRecord:
        if self.password and self.password_file:
            raise ValueError("give password or password_file, not both")
        if not (self.password or self.password_file):
            raise ValueError(f"{self.provider} needs password (or password_file)")
        if self.provider in ("mydns", "dyndns2") and not self.username:
            raise ValueError(f"{self.provider} needs username")
        if not (self.ipv4 or self.ipv6):
            raise ValueError("ipv4 and ipv6 are both false: nothing to update")
        return self


class PublicIpSettings(_Section):
    # URLs that answer with the caller's address; the majority of those that answer wins
    sources: tuple[str, ...] = ("https://api.ipify.org", "https://ifconfig.me/ip", "https://icanhazip.com")
    interval: float = Field(default=60.0, gt=0)  # seconds between checks


class CheckSettings(_Section):
    """What every `[health.NAME]` table takes; `interval` defaults to `[health] interval`."""

    interval: float | None = Field(default=None, gt=0)


class RaidCheckSettings(CheckSettings):
    mdstat: str = "/proc/mdstat"
    lsblk: str = "lsblk"  # names a failing member's physical disk (model, serial)


class SmartCheckSettings(CheckSettings):
    smartctl: str = "smartctl"
    devices: tuple[str, ...] = ()  # default: what `smartctl --scan` finds
    lsblk: str = "lsblk"  # without smartctl, tells whether disks that keep SMART go unwatched


class DiskAgeCheckSettings(CheckSettings):
    service_life_hours: float = Field(default=2 * 365 * 24, gt=0)  # two years of 24x7
    warn_days: float = Field(default=60, ge=0)  # how long before the end to say so


class QueueCheckSettings(CheckSettings):
    warning_size: int = Field(default=100, gt=0)
    warning_age: float = Field(default=3600, gt=0)  # seconds the oldest message may wait
    critical_age: float = Field(default=86400, gt=0)


class CertsCheckSettings(CheckSettings):
    warning_days: float = Field(default=21, ge=0)
    critical_days: float = Field(default=7, ge=0)


class BackupCheckSettings(CheckSettings):
    """Bounds in hours on the age of the last good backup (a day's schedule, and a night's margin for a run that
    failed once) and of the last passed restore drill (a week's schedule, and a day's margin)."""

    warning_hours: float = Field(default=36, gt=0)
    critical_hours: float = Field(default=72, gt=0)
    verify_warning_hours: float = Field(default=8 * 24, gt=0)
    verify_critical_hours: float = Field(default=15 * 24, gt=0)


class MailflowCheckSettings(CheckSettings):
    to: str = ""  # a local mailbox for the probes; setting it turns the check on
    deadline: float = Field(default=120, gt=0)  # seconds a probe may take


class TrafficCheckSettings(CheckSettings):
    interface: str = ""  # default: every interface but loopback, summed
    drop: float = Field(default=0.1, gt=0, lt=1)  # warn below this share of the usual rate for the hour
    min_usual: float = Field(default=2048, ge=0)  # bytes/s: a usual rate this low says nothing when it drops
    min_sessions: float = Field(default=3, ge=0)  # SMTP sessions an hour usually: below this, an hour without is normal


class DnsCheckSettings(CheckSettings):
    """Our names as public resolvers answer them; off until `resolvers` is set (it reaches out)."""

    resolvers: NameserverList = ()  # e.g. ["1.1.1.1", "8.8.8.8", "9.9.9.9"]


def _targets(value: tuple[str, ...]) -> tuple[str, ...]:
    for target in value:
        parse_listen(target)
    return value


Targets = Annotated[tuple[str, ...], AfterValidator(_targets)]  # "host:port" each, as a listener's


class BuddySettings(CheckSettings):
    """A jitaku at a friend's place: each watches the other from outside and tells its owner.

    `url` (the friend's web address) and `token` (the same secret on both sides) turn it on.
    """

    url: str = ""
    token: str = ""
    name: str = ""  # what alerts call the friend; default: the host in url
    theirs: Targets = ()  # "host:port" of the friend's to check from here
    ours: Targets = ()  # "host:port" of ours the friend checks for us
    verify_tls: bool = True

    @model_validator(mode="after")
    def _token(self) -> BuddySettings:
        if self.url and len(self.token) < 16:
            raise ValueError("url needs token, the secret both buddies share, of 16 characters or more")
        return self


class HealthSettings(_Section):
    enabled: bool = True
    interval: float = Field(default=60, gt=0)
    raid: RaidCheckSettings = RaidCheckSettings()
    smart: SmartCheckSettings = SmartCheckSettings()
    diskage: DiskAgeCheckSettings = DiskAgeCheckSettings()
    queue: QueueCheckSettings = QueueCheckSettings()
    certs: CertsCheckSettings = CertsCheckSettings()
    backup: BackupCheckSettings = BackupCheckSettings()
    services: CheckSettings = CheckSettings()
    mailflow: MailflowCheckSettings = MailflowCheckSettings()
    traffic: TrafficCheckSettings = TrafficCheckSettings()
    dns: DnsCheckSettings = DnsCheckSettings()
    buddy: BuddySettings = BuddySettings()
    ddns: CheckSettings = CheckSettings()
    relay: CheckSettings = CheckSettings()
    filters: CheckSettings = CheckSettings()  # the spam and virus engines: a result for each

    def interval_of(self, check: str) -> float:
        own = getattr(self, check, None)
        return float(getattr(own, "interval", None) or self.interval)


class AlertSettings(_Section):
    urls: tuple[str, ...] = ()  # apprise URLs: ntfy://, tgram://, discord://, json://, mailtos:// ...
    heartbeat_url: str = ""  # a healthchecks-style URL pinged while we live
    heartbeat_interval: float = Field(default=300, gt=0)
    language: Literal["en", "ja"] = "en"
    remind: float = Field(default=3600, ge=0)  # seconds between reminders while critical; 0: none
    daily_summary: bool = False

    @field_validator("urls", mode="before")
    @classmethod
    def _urls(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("urls")
    @classmethod
    def _known_urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if value:
            from jitaku.alert_targets import is_valid_url  # apprise is heavy; only configs with alerts pay

            for url in value:
                if not is_valid_url(url):
                    raise ValueError(f"apprise does not understand {url.split('://', 1)[0]}:// URLs like this one")
        return value


class RunSettings(_Section):
    """Who the daemon runs as once its listeners are bound (no process stays root)."""

    user: str | None = Field(default=None, description="the system user to run as after binding")


class BlogSettings(_Section):
    """The blog's URLs. A post's URL is made at `blog import` and kept with it: a later change of either setting
    moves the URLs, and each old one must then redirect (issue 21)."""

    # The year, month and day of a permalink are the post's date here; empty: the system's time zone
    timezone: str = ""
    permalink: str = "/{year}/{month}/{slug}/"
    title: str = ""  # the site's name, in every page's title and the feeds; empty: the hostname
    description: str = ""  # under the title, and the feeds' subtitle
    language: str = Field(default="ja", pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")  # <html lang>, the feeds'
    posts_per_page: int = Field(default=10, gt=0, le=100)
    # Whose comments wait for the owner: "first" (until a name+email pair has one approved), "all", or "none"
    moderation: Literal["first", "all", "none"] = "first"
    max_comment_bytes: int = Field(default=20000, gt=0)  # a longer comment is answered 413
    notify: str = ""  # who hears of each new comment, by mail; empty: the first admin

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        if value:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"expected a time zone name like Asia/Tokyo, got {value!r}") from None
        return value

    @field_validator("permalink")
    @classmethod
    def _permalink(cls, value: str) -> str:
        from jitaku.blog.permalink import check_pattern

        check_pattern(value)
        return value


@dataclass(frozen=True)
class EngineAddress:
    """Where a filter engine listens: "host:port" ([v6]:port) or the path of a Unix socket."""

    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        return self.path or str(Listen(self.host, self.port))


def _engine_address(value: Any) -> EngineAddress:
    if not isinstance(value, str) or not value.strip():
        raise ValueError('expected "host:port" or the path of a Unix socket')
    if value.strip().startswith("/"):
        return EngineAddress(path=value.strip())
    listen = parse_listen(value)
    return EngineAddress(listen.host, listen.port)


EngineAddressValue = Annotated[EngineAddress, BeforeValidator(_engine_address)]


def _engine_url(value: Any) -> str:
    """An http(s) URL the engine's client can reach: a host, a port that is one, no user or password (rspamd
    asks its own Password header, `password`)."""
    if not isinstance(value, str) or not value:
        raise ValueError("expected a URL like http://127.0.0.1:11333")
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"expected a port 1-65535 in {value!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0 or any(c.isspace() for c in value):
        raise ValueError(f"expected a URL like http://127.0.0.1:11333, got {value!r}")
    if "@" in parts.netloc:
        raise ValueError("expected no user or password in the URL (the controller's goes in `password`)")
    return value


EngineUrl = Annotated[str, BeforeValidator(_engine_url)]
OptionalEngineUrl = Annotated[str, BeforeValidator(lambda value: value if value == "" else _engine_url(value))]


class RspamdSettings(_Section):
    url: EngineUrl = Field(description="rspamd's HTTP worker, e.g. http://127.0.0.1:11333")
    password: str = ""  # the controller's, for learning (/learnspam, /learnham); empty: none asked
    # where learning goes; empty: port 11334 of URL's host when URL is on rspamd's 11332 or 11333, else URL itself
    controller_url: OptionalEngineUrl = ""


class SpamAssassinSettings(_Section):
    address: EngineAddressValue  # spamd; TELL (learning) needs spamd started with --allow-tell
    user: str = ""  # the user spamd scores as (its User header); empty: spamd's own


class ClamavSettings(_Section):
    address: EngineAddressValue  # clamd, spoken to with INSTREAM
    max_size: int = Field(default=25 * 1024 * 1024, gt=0)  # bytes sent to clamd at most: its StreamMaxLength


class GreylistSettings(_Section):
    """Off by default: a first try from an unknown (client, sender, recipient) is answered 451 for DELAY seconds."""

    enabled: bool = False
    delay: float = Field(default=300.0, ge=0)
    expiry: float = Field(default=35 * 86400.0, gt=0)  # a triplet not seen again for this long is forgotten
    exempt: tuple[str, ...] = ()  # addresses, domains (example.jp) or client networks (192.0.2.0/24) never greylisted


class FiltersSettings(_Section):
    """Spam and virus filters at SMTP time (issue 23; names as CONTRACTS.md "Filters" settles them)."""

    reject_score: float = 15.0  # refused with 550 5.7.1 from this score on
    junk_score: float = 5.0  # delivered to Junk from this score on
    on_error: Literal["accept", "tempfail"] = "accept"  # an engine down, slow or talking nonsense
    timeout: float = Field(default=30.0, gt=0)  # seconds an engine may take over one message
    rspamd: RspamdSettings | None = None
    spamassassin: SpamAssassinSettings | None = None
    clamav: ClamavSettings | None = None
    greylist: GreylistSettings = GreylistSettings()


IpInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface  # an address with its prefix: 192.168.1.10/24


def _lan_address(value: Any) -> IpInterface | None:
    """An address a host on the LAN may hold, with its prefix: `ip addr add` needs it, and a bare address would
    be taken as a /32 (/128) the router's subnet does not route to."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or "/" not in value:
        raise ValueError(f'expected an address with its prefix like "192.168.1.10/24", got {value!r}')
    try:
        address = ipaddress.ip_interface(value.strip())
    except ValueError:
        raise ValueError(f'expected an address with its prefix like "192.168.1.10/24", got {value!r}') from None
    ip = address.ip
    if ip.is_loopback or ip.is_multicast or ip.is_unspecified or ip.is_link_local:
        raise ValueError(f"expected an address a router can forward to, got {value!r}")
    network = address.network
    if ip.version == 4 and network.prefixlen < 31 and ip in (network.network_address, network.broadcast_address):
        raise ValueError(f"{value!r} is its network's own or broadcast address, which no host may hold")
    return address


LanAddress = Annotated[IpInterface | None, BeforeValidator(_lan_address)]
_INTERFACE = re.compile(r"[^/:\s]{1,15}")  # what Linux takes as a network interface's name (IFNAMSIZ, dev_valid_name)


def _peer_url(value: Any) -> str:
    """The other box's web base URL: http(s), a host, nothing after it but a "/" (the paths are ours to add), no
    user or password (the requests are signed with the replication secret)."""
    if value == "":
        return ""
    example = 'expected the other box\'s web address like "http://192.168.1.11:8080"'
    if not isinstance(value, str) or any(c.isspace() for c in value):
        raise ValueError(example)
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"expected a port 1-65535 in {value!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        raise ValueError(f"{example}, got {value!r}")
    if "@" in parts.netloc:
        raise ValueError("expected no user or password in the URL (requests are signed with the replication secret)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{example}: the base URL alone, got {value!r}")
    return value.rstrip("/")


class HaSettings(_Section):
    """The primary/standby pair (issue 24). `address`, the LAN address the home router forwards to, moves to
    whichever box is primary, on `interface`; without it failover moves no address."""

    address: LanAddress = None  # e.g. "192.168.1.10/24"
    interface: str = Field(default="", validate_default=True)  # e.g. "eth0"; needed with address
    sync_timeout: float = Field(
        default=10.0,
        gt=0,
        description="seconds the primary's commits wait for a standby that stopped answering before replication "
        "turns asynchronous (the primary keeps accepting; RPO is no longer 0 until the standby is back)",
    )
    # the other box's web base URL, which failover, switchover and a restarting primary ask (jitaku.ha.peer); empty:
    # the host `standby setup` or a fence remembered (DIR/ha/peer_host) on this box's own first [web] listen port
    peer: Annotated[str, BeforeValidator(_peer_url)] = ""
    auto_after: float = Field(
        default=0,
        ge=0,
        description="seconds the primary must be silent before the standby promotes itself, and then only when the "
        "witness cannot reach it either and replication was synchronous when contact was lost; longer than the "
        "primary takes to reboot; 0: never (a person runs `jitaku failover`)",
    )
    cold_start_wait: float = Field(
        default=60,
        ge=0,
        description="seconds a primary whose peer is silent at start waits for it (serving nothing) before it takes "
        "mail and the address, and then only when the witness does not see the pair's services answering elsewhere",
    )
    # the outside jitaku asked whether the pair's public services answer (its /api/buddy/probe, jitaku.ha.witness);
    # empty: [health.buddy] url, token and ours
    witness: Annotated[str, BeforeValidator(_peer_url)] = ""
    witness_token: str = ""
    witness_targets: Targets = ()  # "host:port" of the pair's public services, as the witness reaches them

    @model_validator(mode="after")
    def _witness_token(self) -> HaSettings:
        if self.witness and len(self.witness_token) < 16:
            raise ValueError("witness needs witness_token, the witness's [health.buddy] token (16 characters or more)")
        if self.witness and not self.witness_targets:
            raise ValueError(
                "witness needs witness_targets: the pair's public services as the witness reaches them, e.g. "
                '["203.0.113.5:25"]'
            )
        return self

    @field_validator("interface")
    @classmethod
    def _interface(cls, value: str, info: ValidationInfo) -> str:
        if value and (not _INTERFACE.fullmatch(value) or value in (".", "..")):
            raise ValueError(f'expected a network interface\'s name like "eth0", got {value!r}')
        if not value and info.data.get("address") is not None:
            raise ValueError('needed with address: the network interface to hold it on, e.g. "eth0" (see `ip link`)')
        return value


LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
LETS_ENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
_DIRECTORIES = {"letsencrypt": LETS_ENCRYPT, "letsencrypt-staging": LETS_ENCRYPT_STAGING}


def _directory(value: Any) -> str:
    """A directory URL, or one of the names "letsencrypt" and "letsencrypt-staging"."""
    text = _DIRECTORIES.get(str(value), str(value))
    parts = urlsplit(text)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f'expected an https:// URL or "letsencrypt-staging", got {value!r}')
    return text


class AcmeSettings(_Section):
    """Certificates by ACME (RFC 8555, jitaku.acme), on when `email` is set."""

    email: str = ""  # the CA's contact for expiry notices; empty: ACME off, tls/ stays as it is
    directory: Annotated[str, BeforeValidator(_directory)] = LETS_ENCRYPT
    directory_ca: str = ""  # a PEM file to trust for the directory's own HTTPS (a test CA); relative to the data dir
    challenge: Literal["http-01", "dns-01"] = "http-01"
    # the names the certificate carries; default: the mail hostname, the web URL's host and mta-sts.DOMAIN
    names: tuple[str, ...] = ()
    renew_days: int = Field(default=30, ge=1, le=89, description="days before expiry a renewal is due")
    # the CA's domain for the CAA record `jitaku dns records` prints; default: letsencrypt.org for its directories
    caa: str = ""

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        if value and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
            raise ValueError(f"expected an email address, got {value!r}")
        return value

    @field_validator("names", mode="before")
    @classmethod
    def _names(cls, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list | tuple):
            raise ValueError("expected a list of host names")
        return tuple(_domain(str(name)) for name in value)

    @field_validator("caa")
    @classmethod
    def _caa(cls, value: str) -> str:
        return _domain(value) if value else value

    @property
    def enabled(self) -> bool:
        return bool(self.email)

    @property
    def caa_domain(self) -> str:
        """The CAA record's issuer domain: the configured one, else Let's Encrypt's for its directories."""
        return self.caa or ("letsencrypt.org" if self.directory in _DIRECTORIES.values() else "")


class BackupSettings(_Section):
    """Snapshots through restic (jitaku.backup), on when `target` is set: restic's own repository format, so that
    restic alone can read them back on any machine."""

    # a restic repository: a path (the second disk; relative: to the data dir), "sftp:USER@HOST:/PATH",
    # "sftp://USER@HOST:PORT//PATH", "s3:https://HOST/BUCKET[/PREFIX]"
    target: str = ""
    password_file: str = "backup.secret"  # relative to the data dir; `jitaku backup init` makes it, 0600
    every: int = Field(default=86400, ge=0, description="seconds between scheduled backups; 0: none")
    verify_every: int = Field(default=7 * 86400, ge=0, description="seconds between restore drills; 0: none")
    keep_daily: int = Field(default=7, ge=0)
    keep_weekly: int = Field(default=4, ge=0)
    keep_monthly: int = Field(default=12, ge=0)
    # an sftp: target's ssh key and known_hosts file, relative to the data dir ("": ssh's own defaults), named in
    # the ssh command jitaku gives restic (jitaku.backup.targets)
    ssh_key: str = ""
    ssh_known_hosts: str = ""
    credentials_file: str = ""  # an s3: target's keys: KEY=VALUE lines, 0600, relative to the data dir

    @field_validator("target")
    @classmethod
    def _target(cls, value: str) -> str:
        if value != value.strip() or any(ord(c) < 32 for c in value):
            raise ValueError(f"expected a restic repository (a path, sftp:..., s3:...), got {value!r}")
        if value.startswith("sftp:"):
            parse_sftp(value)  # ValueError: what ssh could not be given, said now rather than at backup time
        return value

    @field_validator("ssh_key", "ssh_known_hosts")
    @classmethod
    def _ssh_file(cls, value: str, info: ValidationInfo) -> str:
        """restic splits its sftp.command on spaces and quotes: a path with one would reach ssh cut in two."""
        if value and not str(info.data.get("target", "")).startswith("sftp:"):
            raise ValueError('is for an SFTP target (target = "sftp:USER@HOST:/PATH")')
        if re.search(r"[\s'\"\\]", value):
            raise ValueError(
                f"expected a path with no spaces, quotes or backslashes (restic's sftp.command), got {value!r}"
            )
        return value

    @field_validator("credentials_file")
    @classmethod
    def _credentials_file(cls, value: str, info: ValidationInfo) -> str:
        if value and not str(info.data.get("target", "")).startswith("s3:"):
            raise ValueError('is for an S3 target (target = "s3:https://HOST/BUCKET")')
        return value

    @property
    def enabled(self) -> bool:
        return bool(self.target)


class Settings(_Section):
    hostname: str = ""
    domains: tuple[str, ...]
    smtp: SmtpSettings = SmtpSettings()
    submission: SubmissionSettings = SubmissionSettings()
    submissions: SubmissionsSettings = SubmissionsSettings()
    imap: ImapSettings = ImapSettings()
    imaps: ImapsSettings = ImapsSettings()
    pop3: Pop3Settings = Pop3Settings()
    pop3s: Pop3sSettings = Pop3sSettings()
    web: WebSettings = WebSettings()
    login: LoginSettings = LoginSettings()
    relay: RelaySettings | None = None
    delivery: DeliverySettings = DeliverySettings()
    dns: DnsSettings = DnsSettings()
    queue: QueueSettings = QueueSettings()
    dkim: DkimSettings = DkimSettings()
    database: DatabaseSettings = DatabaseSettings()
    ddns: tuple[DdnsRecord, ...] = ()
    public_ip: PublicIpSettings = PublicIpSettings()
    health: HealthSettings = HealthSettings()
    alerts: AlertSettings = AlertSettings()
    run: RunSettings = RunSettings()
    blog: BlogSettings = BlogSettings()
    filters: FiltersSettings = FiltersSettings()
    ha: HaSettings = HaSettings()
    acme: AcmeSettings = AcmeSettings()
    backup: BackupSettings = BackupSettings()

    @field_validator("acme")
    @classmethod
    def _acme_dns(cls, value: AcmeSettings, info: ValidationInfo) -> AcmeSettings:
        """DNS-01 sets TXT records through the one DNS provider here that can: Cloudflare's API."""
        records = info.data.get("ddns") or ()
        if value.challenge == "dns-01" and not any(record.provider == "cloudflare" for record in records):
            raise ValueError('challenge = "dns-01" needs a [[ddns]] table with provider = "cloudflare"')
        return value

    @field_validator("ha")
    @classmethod
    def _witness(cls, value: HaSettings, info: ValidationInfo) -> HaSettings:
        """Automatic failover asks a witness, which needs a URL and the targets it probes (jitaku.ha.witness)."""
        health = info.data.get("health")
        buddy = health.buddy if isinstance(health, HealthSettings) else BuddySettings()
        if value.auto_after and not (value.witness or buddy.url):
            raise ValueError("auto_after needs a witness: set witness (or [health.buddy] url)")
        if value.auto_after and not (value.witness_targets or (not value.witness and buddy.ours)):
            raise ValueError("auto_after needs witness_targets (or [health.buddy] ours): what the witness probes")
        return value

    @field_validator("domains", mode="before")
    @classmethod
    def _domains(cls, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value:
            raise ValueError("expected a non-empty list of domain names")
        return tuple(_domain(str(v)) for v in value)

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, value: str) -> str:
        return _domain(value) if value else value

    @property
    def mail_hostname(self) -> str:
        """The name we greet with and put in Received: the configured one or mail.DOMAIN."""
        return self.hostname or f"mail.{self.domains[0]}"

    @property
    def web_url(self) -> str:
        return self.web.url.rstrip("/") or f"https://{self.mail_hostname}"

    @property
    def acme_names(self) -> tuple[str, ...]:
        """The names a certificate from ACME carries: the configured ones, else the mail hostname, the web URL's
        host and mta-sts.DOMAIN (MTA-STS's policy host), each once, in that order."""
        if self.acme.names:
            return self.acme.names
        web = (urlsplit(self.web_url).hostname or "").lower()
        names = (self.mail_hostname, web, f"mta-sts.{self.domains[0]}")
        return tuple(dict.fromkeys(name for name in names if name == self.mail_hostname or _public_name(name)))

    def is_local_domain(self, domain: str) -> bool:
        return domain.lower() in self.domains


LOCAL_ONLY = ("local", "lan", "localhost", "localdomain", "internal", "home.arpa", "invalid")  # no CA issues for these


def _public_name(name: str) -> bool:
    """Whether a CA could issue for NAME: a web URL's host may be an address or a name only the LAN knows
    (http://192.168.1.5:8025/, http://nas.local/), and one such name in an order makes the CA refuse it whole."""
    if not name or "." not in name.strip("."):
        return False
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return not any(name == suffix or name.endswith(f".{suffix}") for suffix in LOCAL_ONLY)
    return False


@dataclass(frozen=True)
class Config:
    """Settings plus where they came from: the data directory owns every path."""

    settings: Settings
    data_dir: Path

    @property
    def database_url(self) -> str:
        """The store's URL; a managed cluster's names the file its password is in (libpq's passfile)."""
        database = self.settings.database
        url = database.managed_url or f"sqlite:///{self.data_dir / 'jitaku.db'}"
        if database.managed:
            separator = "&" if "?" in url else "?"
            url += f"{separator}passfile={quote(str(self.postgres_dir / PASSFILE_NAME))}"
        return url

    @property
    def postgres_dir(self) -> Path:
        """The managed PostgreSQL cluster's data directory (its PGDATA), absolute: pg_ctl runs in / (a directory its
        user may enter), and libpq reads the password file from wherever the command was started."""
        return Path(os.path.abspath(self.data_dir / "postgres"))

    @property
    def dkim_dir(self) -> Path:
        return self.data_dir / "dkim"

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"


def load(data_dir: Path) -> Config:
    """Read DIR/jitaku.toml; raise ConfigError with file, line and key on any problem."""
    path = data_dir / CONFIG_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no config here; run `jitaku init --domain DOMAIN --dir {data_dir}` first") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read: {error}") from None
    return Config(parse(text, path), data_dir)


def parse(text: str, path: Path) -> Settings:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: {error}") from None
    try:
        return Settings.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        keys = [str(part) for part in first["loc"] if not isinstance(part, int)]
        loc = first["loc"]
        table = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None  # the Nth [[ddns]]; not a list item
        raise ConfigError(_describe(path, text, keys, first, table)) from None


def _describe(path: Path, text: str, keys: list[str], error: Any, table: int | None) -> str:
    if keys and keys[-1] in {"function-before", "function-after"}:
        keys = keys[:-1]
    section, key = (keys[:-1], keys[-1]) if keys else ([], "")
    name = f"[{'.'.join(section)}] {key}" if section else key
    line = _line_of(text, section, key, table)
    where = f"{path}:{line}" if line else str(path)
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown key {name}"
    if error["type"] == "missing":
        return f"{where}: missing key {name}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {name}: {message}"


def _line_of(text: str, section: list[str], key: str, table: int | None = None) -> int | None:
    """Line of KEY in [SECTION] (in the TABLE-th [[SECTION]] of an array), else of that header;
    tomllib does not keep positions."""
    current: list[str] = []
    occurrences: Counter[tuple[str, ...]] = Counter()
    section_line: int | None = None
    header = re.compile(r"\s*\[+\s*([^\]]+?)\s*\]+\s*(#.*)?$")
    assignment = re.compile(r"\s*([A-Za-z0-9_\-\"']+)\s*=")
    for number, line in enumerate(text.splitlines(), start=1):
        found = header.match(line)
        if found:
            current = [part.strip().strip("\"'") for part in found.group(1).split(".")]
            occurrences[tuple(current)] += 1
            if current == section + [key] and _is_table(occurrences, current, table):
                return number
            if section and current == section and section_line is None and _is_table(occurrences, current, table):
                section_line = number
            continue
        found = assignment.match(line)
        if found and current == section and found.group(1).strip("\"'") == key:
            if _is_table(occurrences, current, table):
                return number
    return section_line


def _is_table(occurrences: Counter[tuple[str, ...]], current: list[str], table: int | None) -> bool:
    return table is None or occurrences[tuple(current)] == table + 1
