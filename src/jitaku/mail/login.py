"""Passwords, checked the same way for every protocol that takes them (submission, POP3, IMAP)."""

from __future__ import annotations

import asyncio
import ipaddress

from jitaku.passwords import verify_password
from jitaku.store import Database, accounts


async def verify(database: Database, address: str, password: str) -> str | None:
    """The user's address when PASSWORD is theirs; None otherwise. Hashing runs off the event loop
    (argon2 takes tens of milliseconds), and an unknown user costs as long as a known one."""
    user = await database.read(lambda connection: accounts.find_user(connection, address))
    valid = await asyncio.to_thread(verify_password, user.password_hash if user else None, password)
    return user.address if user and valid else None


def client_of(writer: asyncio.StreamWriter) -> str:
    """The connecting client's address, for logs and the failed-login limit."""
    peer = writer.get_extra_info("peername")
    return str(peer[0]) if peer else "?"


def may_send_password(client: str, tls: bool) -> bool:
    return tls or is_loopback(client)


def is_loopback(host: str) -> bool:
    """Passwords travel in the clear only on this machine (RFC 8314 §3, our rule for every protocol)."""
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False
