"""The mail-flow probe: send a message along the path strangers use (our domain's MX as DNS tells it, on
the port remote servers connect to) to a probe mailbox, and expect it there within a deadline. In the
story inbound mail was dead for four days and nobody knew; this says which step broke, within minutes.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from email.utils import formatdate, make_msgid

import aiosmtplib

from jitaku.config import Settings
from jitaku.health.result import Result, State
from jitaku.mail import transport
from jitaku.store import Database, accounts, mailstore

HEADER = b"X-Jitaku-Probe"
POLL = 1.0


class Failed(Exception):
    def __init__(self, step: str, why: str, ja: str) -> None:
        super().__init__(why)
        self.step = step  # dns, connect, smtp or delivery (CONTRACTS)
        self.ja = ja


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


async def _send(settings: Settings, message: bytes) -> str:
    """Through our MX, as a stranger's server would; the MX host used."""
    to = settings.health.mailflow.to
    domain = to.rsplit("@", 1)[-1]
    try:
        hosts = await transport.mx_hosts(domain)
        targets = [(host, address) for host in hosts for address in await transport.addresses(host)]
    except transport.DeliveryError as error:  # its text starts with an enhanced status code, for DSNs
        why = re.sub(r"^\d\.\d{1,3}\.\d{1,3} ", "", str(error))
        raise Failed("dns", why, why) from None
    if not targets:
        raise Failed(
            "dns",
            f"no address for the MX of {domain} ({', '.join(hosts)})",
            f"{domain} の MX（{'、'.join(hosts)}）にアドレスがありません",
        )
    port = settings.delivery.port
    host, address = targets[0]
    client = aiosmtplib.SMTP(hostname=address, port=port, local_hostname=settings.hostname, timeout=30, start_tls=False)
    try:
        await client.connect()
    except (aiosmtplib.SMTPException, OSError) as error:
        cause = error.__cause__ if isinstance(error.__cause__, OSError) else error
        why = getattr(cause, "strerror", None) or cause.__class__.__name__
        raise Failed(
            "connect",
            f"cannot connect to {host}[{address}]:{port}: {why}",
            f"{host}[{address}]:{port} に接続できません: {why}",
        ) from None
    try:
        await client.ehlo()  # no STARTTLS: a sender whose handshake fails falls back to plain text anyway
        await client.sendmail("", [to], message)
    except aiosmtplib.SMTPRecipientsRefused as refused:
        first = refused.recipients[0]
        raise Failed(
            "smtp", f"{host} answered {first.code} {first.message}", f"{host} の応答: {first.code} {first.message}"
        ) from None
    except aiosmtplib.SMTPResponseException as error:
        raise Failed(
            "smtp", f"{host} answered {error.code} {error.message}", f"{host} の応答: {error.code} {error.message}"
        ) from None
    except (aiosmtplib.SMTPException, OSError) as error:
        raise Failed("smtp", f"{host} broke off: {error}", f"{host} との通信が途中で切れました: {error}") from None
    finally:
        client.close()
    return host


def _probes(database: Database, to: str) -> list[tuple[int, float, bytes]]:
    """Probe messages in the probe mailbox: (uid, when it arrived, token)."""
    found: list[tuple[int, float, bytes]] = []
    for message in database.read_now(lambda connection: mailstore.list_messages(connection, to)):
        head = message.body.split(b"\r\n\r\n", 1)[0]
        token = re.search(rb"^" + HEADER + rb":\s*(\S+)", head, re.MULTILINE | re.IGNORECASE)
        if token:
            found.append((message.uid, message.received_at, token.group(1)))
    return found


async def _clean(database: Database, to: str, token: bytes, deadline: float) -> None:
    """Remove our probe, and any older than a deadline (a late one, or one whose checker died); not the
    probe another checker (`jitaku check` beside the daemon) still waits for."""
    stale = time.time() - deadline
    probes = await asyncio.to_thread(_probes, database, to)
    gone = [uid for uid, arrived, found in probes if found == token or arrived < stale]
    if gone:
        await database.write(lambda connection: mailstore.remove(connection, to, gone))


async def check(settings: Settings, database: Database) -> Result | None:
    mailflow = settings.health.mailflow
    if not mailflow.to:
        return None
    if await database.read(lambda connection: accounts.find_user(connection, mailflow.to)) is None:
        sentence = f"[health.mailflow] to = {mailflow.to!r} is not a mailbox here; make it one with `jitaku user add`."
        ja = (
            f"[health.mailflow] to = {mailflow.to!r} はこのサーバーのメールボックスではありません。"
            "`jitaku user add` で作ってください。"
        )
        return Result("mailflow", State.WARNING, sentence, ja=ja)
    token = secrets.token_hex(8)
    started = time.monotonic()
    try:
        host = await _send(settings, _probe(settings, token))
        while token.encode() not in (
            found for _uid, _at, found in await asyncio.to_thread(_probes, database, mailflow.to)
        ):
            if time.monotonic() - started > mailflow.deadline:
                raise Failed(
                    "delivery",
                    f"{host} took the probe but it did not reach {mailflow.to} in {mailflow.deadline:.0f} s",
                    f"{host} はテストメールを受け取りましたが、"
                    f"{mailflow.deadline:.0f} 秒以内に {mailflow.to} に届きませんでした",
                )
            await asyncio.sleep(POLL)
    except Failed as failed:
        sentence = f"mail from outside cannot reach {mailflow.to}: {failed.step}: {failed}."
        ja = f"外部からのメールが {mailflow.to} に届きません: {failed.step}: {failed.ja}。"
        return Result("mailflow", State.CRITICAL, sentence, {"arrived": 0.0}, failed.step, ja=ja)
    finally:
        await _clean(database, mailflow.to, token.encode(), mailflow.deadline)
    took = time.monotonic() - started
    sentence = f"a probe to {mailflow.to} through {host} arrived in {took:.1f} s."
    ja = f"{host} 経由の {mailflow.to} 宛てテストメールが {took:.1f} 秒で届きました。"
    return Result("mailflow", State.OK, sentence, {"arrived": 1.0, "seconds": round(took, 3)}, ja=ja)
