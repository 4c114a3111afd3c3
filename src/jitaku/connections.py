"""Bounds on the connections a process holds: per listener, from one address and in all; the descriptor
limit; accept errors and the last descriptors taken logged once a minute; and, at shutdown, each session's
goodbye, bounded in time.

At the common soft limit of 1,024 descriptors, 1,100 idle sockets took every listener down while the log
grew 6 MB/s of `accept() out of system resource` tracebacks (issue 15). Each process counts its own
connections: with `[smtp] workers = N` the SMTP listeners accept in N processes, so an address may hold
up to N times `max_connections_per_ip` there; each process's `max_connections` bounds its own
descriptors, which are what run out (RLIMIT_NOFILE is per process).
"""

from __future__ import annotations

import asyncio
import collections
import errno
import functools
import ipaddress
import resource
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from jitaku import log

Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
IPV6_PREFIX = 64  # one household's IPv6 network: its devices may take any address in it, and so may an attacker
GOODBYE_TIMEOUT = 1.0  # seconds a client has, at shutdown, to take its session's last line before it is cut off


@functools.lru_cache(maxsize=1024)
def address_key(client: str) -> str:
    """The address whose connections and failed logins count together: an IPv4 address, or an IPv6 client's
    /64, since one address per connection costs an IPv6 client nothing. Remembered per address: asked twice
    a connection, parsing it was ~3% of an SMTP message's CPU."""
    try:
        address = ipaddress.ip_address(client.split("%")[0])
    except ValueError:
        return client[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)


class OpenSessions:
    """This process's sessions, each with how it ends: at shutdown every one says its protocol's goodbye and
    closes (issue 17: SIGTERM cut IMAP IDLE clients off without a BYE, each cut logging a CancelledError
    traceback). Each ending waits on its client for GOODBYE_TIMEOUT at most, so no client holds the stop."""

    def __init__(self) -> None:
        self._open: dict[object, Callable[[], Awaitable[None]]] = {}

    def add(self, session: object, end: Callable[[], Awaitable[None]]) -> None:
        self._open[session] = end

    def discard(self, session: object) -> None:
        self._open.pop(session, None)

    async def end(self) -> int:
        """End every session, all at once, and any that opened meanwhile (accepted just before the listeners
        closed); how many there were."""
        ended = 0
        while self._open:
            ends = list(self._open.values())
            self._open.clear()
            await asyncio.gather(*(end() for end in ends))
            ended += len(ends)
        return ended


async def close_within(writer: asyncio.StreamWriter) -> None:
    """Close WRITER's connection, waiting GOODBYE_TIMEOUT at most for the client to take what is unsent (and
    a TLS client to answer our close_notify); then cut it off."""
    writer.close()
    try:
        async with asyncio.timeout(GOODBYE_TIMEOUT):
            await writer.wait_closed()
    except TimeoutError:
        writer.transport.abort()
    except (ConnectionError, ssl.SSLError):
        pass


class ConnectionLimit:
    """The open connections of one listener section ([smtp], [imap], [web], ...) in this process."""

    def __init__(self, listener: str, per_ip: int, total: int) -> None:
        self.listener = listener
        self.per_ip = per_ip
        self.total = total
        self._open: collections.Counter[str] = collections.Counter()
        self._count = 0
        self._log = log.Throttled()

    def admit(self, ip: str) -> str | None:
        """Count a new connection from IP (an IPv6 one under its /64); None, or why it is refused ("address" or
        "total"): the caller then answers in its protocol's words, closes, and does not call `release`."""
        key = address_key(ip)
        if self._count >= self.total:
            reason = "total"
        elif self._open[key] >= self.per_ip:
            reason = "address"
        else:
            self._open[key] += 1
            self._count += 1
            return None
        self._log.event(
            reason, "connection_refused", listener=self.listener, reason=reason, client=ip, open=self._count
        )
        return reason

    def release(self, ip: str) -> None:
        key = address_key(ip)
        self._count -= 1
        self._open[key] -= 1
        if not self._open[key]:
            del self._open[key]


def limited(serve: Serve, limit: ConnectionLimit, refusal: bytes, sessions: OpenSessions) -> Serve:
    """SERVE (an asyncio.start_server callback) for connections LIMIT admits, each one of SESSIONS, ended at
    shutdown by cancelling it (SERVE then says its goodbye); others get the line REFUSAL (with CRLF) and are
    closed."""

    async def gate(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        DESCRIPTORS.accepted(writer.transport)
        peer = writer.get_extra_info("peername")
        ip = str(peer[0]) if peer else "?"
        if limit.admit(ip) is not None:
            writer.write(refusal + b"\r\n")
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        sessions.add(task, functools.partial(_cancel, task))
        try:
            await serve(reader, writer)
        finally:
            sessions.discard(task)
            limit.release(ip)

    return gate


async def _cancel(task: asyncio.Task[Any]) -> None:
    """Cancel TASK and wait until it has ended."""
    task.cancel()
    await asyncio.wait({task})


# An accepted connection given one of a process's last descriptors means the next accepts fail. asyncio's loop
# then retries each second and calls its exception handler (AcceptErrors); uvloop (libuv) accepts and closes
# the waiting connections without a word to anyone. Either way the log says so, one line a minute.
LAST_DESCRIPTORS = 8


class Descriptors:
    """This process's descriptors running out, as the accepts see it."""

    def __init__(self) -> None:
        self._log = log.Throttled()

    def accepted(self, transport: asyncio.BaseTransport) -> None:
        """Note TRANSPORT's connection, just accepted: descriptors are handed out lowest first, so one this
        high leaves fewer than LAST_DESCRIPTORS free."""
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.fileno() >= open_files_limit() - LAST_DESCRIPTORS:
            self.ran_out(errno.EMFILE)

    def ran_out(self, number: int) -> None:
        name = errno.errorcode.get(number, str(number))
        self._log.event(name, "accept_resource_error", error=name, open_files_limit=open_files_limit())


DESCRIPTORS = Descriptors()


class AcceptErrors:
    """The event loop's exception handler: asyncio logs a traceback each time a listener cannot accept for
    want of descriptors (and retries a second later, for every listener); this logs one line a minute."""

    RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if isinstance(error, OSError) and error.errno in self.RESOURCES and "accept" in context.get("message", ""):
            DESCRIPTORS.ran_out(error.errno or 0)
            return
        loop.default_exception_handler(context)


def open_files_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def raise_open_files_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (the soft one is often 1,024); the limit
    now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):  # an unlimited hard limit is more than the kernel's nr_open allows
            pass
    return open_files_limit()
