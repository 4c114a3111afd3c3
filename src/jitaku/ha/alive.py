"""Whether an old primary whose web does not answer is still up (`jitaku failover`, before it promotes).

A web that is silent for a few seconds is no proof that its box is down: the web may hang while the mail
listeners and PostgreSQL still take writes, and promoting then makes two primaries. So the failover knocks at the
doors that matter: the old primary's SMTP (the peer URL's host on this box's own MX port: the pair's boxes are
configured alike) and its PostgreSQL (the host and port this standby replicates from). A door that still takes a
TCP connection is a box that may be up; only when none does is the old primary taken for down.

A door that is this box's own (a pair on one host, as in tests, where the peer's host is this box's address too)
says nothing of the peer and is not knocked at."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from jitaku import ports
from jitaku.config import Config

PROBE_TIMEOUT = 2.0  # seconds a door has to take the connection


@dataclass(frozen=True)
class Door:
    what: str  # "SMTP", "PostgreSQL"
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"its {self.what} at {host}:{self.port}"


def url_host(url: str) -> str | None:
    """The host of URL (brackets taken off an IPv6 address); None when it has none."""
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def mx_port(config: Config) -> int | None:
    """This box's MX port: where the running daemon listens (DIR/ports.json), else [smtp] listen's first."""
    listening = (ports.read(config.data_dir) or {}).get("mx") or config.settings.smtp.listen
    return listening[0].port if listening else None


def web_door(url: str) -> Door | None:
    """The old primary's web at URL, where a fence is delivered; None when URL names no host."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return Door("web", parts.hostname, port) if parts.hostname else None


def doors(config: Config, url: str, database: tuple[str, int] | None) -> list[Door]:
    """Where the old primary at URL would answer if it were up: its SMTP, and DATABASE (its PostgreSQL as this
    standby reaches it), leaving out the doors that are this box's own."""
    found = []
    host, port = url_host(url), mx_port(config)
    if host and port and not ours(host):
        found.append(Door("SMTP", host, port))
    if database is not None and not _own_database(config, *database):
        found.append(Door("PostgreSQL", *database))
    return found


def answering(found: list[Door], timeout: float = PROBE_TIMEOUT) -> list[Door]:
    """The doors in FOUND that take a TCP connection within TIMEOUT seconds each."""
    return [door for door in found if accepts(door.host, door.port, timeout)]


def accepts(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def ours(host: str) -> bool:
    """Whether HOST (an address, or a name) is an address of this box: one it can bind."""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    except (OSError, UnicodeError):
        return False
    for address in addresses:
        family = socket.AF_INET6 if ":" in str(address) else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.bind((str(address), 0))
                return True
        except OSError:
            continue
    return False


def _own_database(config: Config, host: str, port: int) -> bool:
    """Whether HOST:PORT is this box's own cluster (a pair on one host differs by port)."""
    return any(listen.port == port for listen in config.settings.database.listen) and ours(host)
