"""The mail-flow probe: send a message along the path strangers use (our domain's MX as DNS tells it, on
the port remote servers connect to) to a probe mailbox, and expect it there within a deadline. In the
story inbound mail was dead for four days and nobody knew; this says which step broke, within minutes.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import time
from dataclasses import dataclass
from email.utils import formatdate, make_msgid

import aiosmtplib

from jitaku.config import Settings
from jitaku.health.result import Result, State
from jitaku.mail import transport
from jitaku.store import Database, accounts, mailstore

HEADER = b"X-Jitaku-Probe"
POLL = 1.0
CONNECT_TIMEOUT = 30.0  # seconds for each step of the SMTP session too


class Failed(Exception):
    def __init__(self, step: str, why: str, ja: str, family: str = "") -> None:
        super().__init__(why)
        self.step = step  # dns, connect, smtp or delivery: where the probe's path broke
        self.ja = ja
        self.family = family  # the path's, IPv4 or IPv6; none for dns

    @property
    def kind(self) -> str:
        """What went wrong where, without the words that change each time (a server's queue id)."""
        return f"{self.step} {self.family}".strip()


def _probe(settings: Settings, token: str) -> bytes:
    sender = f"postmaster@{settings.hostname}"
    return (
        f"From: jitaku mail-flow probe <{sender}>\r\n"
        f"To: <{settings.health.mailflow.to}>\r\n"
        f"Subject: jitaku mail-flow probe {token}\r\n"
        f"Date: {formatdate(localtime=False)}\r\n"
        f"Message-ID: {make_msgid('probe', settings.hostname)}\r\n"
        f"{HEADER.decode()}: {token}\r\n"
        "\r\n"
        "This message tests that mail reaches this server from outside. jitaku removes it.\r\n"
    ).encode()


@dataclass(frozen=True)
class _Path:
    """One way a stranger's server reaches our MX: a host, one of its addresses, and our port."""

    host: str
    address: str
    port: int

    @property
    def family(self) -> str:
        return transport.family(self.address)

    def __str__(self) -> str:
        return f"{self.host}[{self.address}]:{self.port} over {self.family}"

    @property
    def ja(self) -> str:
        return f"{self.family} で {self.host}[{self.address}]:{self.port}"


async def _paths(settings: Settings) -> list[_Path]:
    """The first MX host with an address, once per family it has: a stranger with IPv6 takes the AAAA, so a
    broken IPv6 path (a listener on IPv4 only, a firewall) is news though IPv4 works."""
    to = settings.health.mailflow.to
    domain = to.rsplit("@", 1)[-1]
    try:
        hosts = await transport.mx_hosts(domain)
        for host in hosts:
            found = await transport.addresses(host)
            first: dict[str, str] = {}
            for address in found:
                first.setdefault(transport.family(address), address)
            if first:
                return [_Path(host, address, settings.delivery.port) for address in first.values()]
    except transport.DeliveryError as error:  # its text starts with an enhanced status code, for DSNs
        why = re.sub(r"^\d\.\d{1,3}\.\d{1,3} ", "", str(error))
        raise Failed("dns", why, why) from None
    raise Failed(
        "dns",
        f"no address for the MX of {domain} ({', '.join(hosts)})",
        f"{domain} の MX（{'、'.join(hosts)}）にアドレスがありません",
    )


def _connect_failure(error: aiosmtplib.SMTPException | OSError) -> str:
    """What a failed connect means, in the kernel's words ("Connection refused"), not asyncio's
    ("Connect call failed ('2001:db8::25', 25, 0, 0)")."""
    cause = error.__cause__ if isinstance(error.__cause__, OSError) else error
    if isinstance(cause, TimeoutError):
        return f"no answer within {CONNECT_TIMEOUT:g} s"
    if isinstance(cause, OSError) and cause.errno:
        return os.strerror(cause.errno)
    return str(cause) or cause.__class__.__name__


async def _send(settings: Settings, path: _Path, message: bytes) -> None:
    """Through PATH to our MX, as a stranger's server would."""
    to = settings.health.mailflow.to
    client = aiosmtplib.SMTP(
        hostname=path.address,
        port=path.port,
        local_hostname=settings.hostname,
        timeout=CONNECT_TIMEOUT,
        start_tls=False,
    )
    try:
        await client.connect()
    except (aiosmtplib.SMTPException, OSError) as error:
        why = _connect_failure(error)
        raise Failed(
            "connect", f"cannot connect to {path}: {why}", f"{path.ja} に接続できません: {why}", path.family
        ) from None
    try:
        await client.ehlo()  # no STARTTLS: a sender whose handshake fails falls back to plain text anyway
        await client.sendmail("", [to], message)
    except aiosmtplib.SMTPRecipientsRefused as refused:
        first = refused.recipients[0]
        raise Failed(
            "smtp",
            f"{path} answered {first.code} {first.message}",
            f"{path.ja} の応答: {first.code} {first.message}",
            path.family,
        ) from None
    except aiosmtplib.SMTPResponseException as error:
        raise Failed(
            "smtp",
            f"{path} answered {error.code} {error.message}",
            f"{path.ja} の応答: {error.code} {error.message}",
            path.family,
        ) from None
    except (aiosmtplib.SMTPException, OSError) as error:
        raise Failed(
            "smtp", f"{path} broke off: {error}", f"{path.ja} との通信が途中で切れました: {error}", path.family
        ) from None
    finally:
        client.close()


async def _probe_through(settings: Settings, database: Database, path: _Path, token: str, started: float) -> float:
    """Send a probe through PATH and wait for it in the probe mailbox; the seconds it took."""
    mailflow = settings.health.mailflow
    await _send(settings, path, _probe(settings, token))
    while token.encode() not in (found for _uid, _at, found in await asyncio.to_thread(_probes, database, mailflow.to)):
        if time.monotonic() - started > mailflow.deadline:
            raise Failed(
                "delivery",
                f"{path} took the probe but it did not reach {mailflow.to} in {mailflow.deadline:.0f} s",
                f"{path.ja} はテストメールを受け取りましたが、"
                f"{mailflow.deadline:.0f} 秒以内に {mailflow.to} に届きませんでした",
                path.family,
            )
        await asyncio.sleep(POLL)
    return time.monotonic() - started


def _probes(database: Database, to: str) -> list[tuple[int, float, bytes]]:
    """Probe messages in the probe mailbox: (uid, when it arrived, token)."""
    found: list[tuple[int, float, bytes]] = []
    for message in database.query_now(lambda statements: mailstore.list_messages(statements, to)):
        head = message.body.split(b"\r\n\r\n", 1)[0]
        token = re.search(rb"^" + HEADER + rb":\s*(\S+)", head, re.MULTILINE | re.IGNORECASE)
        if token:
            found.append((message.uid, message.received_at, token.group(1)))
    return found


async def _clean(database: Database, to: str, tokens: set[bytes], deadline: float) -> None:
    """Remove our probes, and any older than a deadline (a late one, or one whose checker died); not the
    probe another checker (`jitaku check` beside the daemon) still waits for."""
    stale = time.time() - deadline
    probes = await asyncio.to_thread(_probes, database, to)
    gone = [uid for uid, arrived, found in probes if found in tokens or arrived < stale]
    if gone:
        await database.transact(lambda tx: mailstore.remove(tx, to, gone))


async def check(settings: Settings, database: Database) -> Result | None:
    mailflow = settings.health.mailflow
    if not mailflow.to:
        return None
    if await database.query(lambda statements: accounts.find_user(statements, mailflow.to), snapshot=False) is None:
        sentence = f"[health.mailflow] to = {mailflow.to!r} is not a mailbox here; make it one with `jitaku user add`."
        ja = (
            f"[health.mailflow] to = {mailflow.to!r} はこのサーバーのメールボックスではありません。"
            "`jitaku user add` で作ってください。"
        )
        return Result("mailflow", State.WARNING, sentence, ja=ja)
    token = secrets.token_hex(8)
    tokens: set[bytes] = set()
    started = time.monotonic()
    try:
        paths = await _paths(settings)
        tokens = {f"{token}-{path.family}".encode() for path in paths}
        tried = await asyncio.gather(
            *(_probe_through(settings, database, path, f"{token}-{path.family}", started) for path in paths),
            return_exceptions=True,
        )
    except Failed as failed:
        tried = [failed]
    finally:
        await _clean(database, mailflow.to, tokens, mailflow.deadline)
    for outcome in tried:
        if isinstance(outcome, BaseException) and not isinstance(outcome, Failed):
            raise outcome
    failures = [outcome for outcome in tried if isinstance(outcome, Failed)]
    if failures:
        why = "; ".join(f"{failed.step}: {failed}" for failed in failures)
        why_ja = "、".join(f"{failed.step}: {failed.ja}" for failed in failures)
        sentence = f"mail from outside cannot reach {mailflow.to}: {why}."
        ja = f"外部からのメールが {mailflow.to} に届きません: {why_ja}。"
        detail = ", ".join(failed.kind for failed in failures)
        return Result("mailflow", State.CRITICAL, sentence, {"arrived": 0.0}, detail, ja=ja)
    took = {path.family: seconds for path, seconds in zip(paths, tried, strict=True) if isinstance(seconds, float)}
    over = " and ".join(f"{seconds:.1f} s over {family}" for family, seconds in took.items())
    over_ja = "、".join(f"{family} で {seconds:.1f} 秒" for family, seconds in took.items())
    host = paths[0].host
    sentence = f"a probe to {mailflow.to} through {host} arrived in {over}."
    ja = f"{host} 経由の {mailflow.to} 宛てテストメールが届きました（{over_ja}）。"
    return Result("mailflow", State.OK, sentence, {"arrived": 1.0, "seconds": round(max(took.values()), 3)}, ja=ja)
