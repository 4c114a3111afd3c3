"""The daemon: open the store, start every listener and the queue in one TaskGroup, stop on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import functools
import ipaddress
import os
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass

from jitaku import log, ports, resolver
from jitaku.config import Config, Listen
from jitaku.connections import (
    AcceptErrors,
    ConnectionLimit,
    OpenSessions,
    limited,
    open_files_limit,
    raise_open_files_limit,
)
from jitaku.errors import ServeError
from jitaku.lists.engine import ListEngine, on_personal_delivered
from jitaku.mail import dkim, transport
from jitaku.mail.imap.server import MAX_LINE as IMAP_MAX_LINE
from jitaku.mail.imap.server import ImapServer
from jitaku.mail.login import Authenticator, Logins, Sessions
from jitaku.mail.pipeline import Pipeline
from jitaku.mail.policy import Policy
from jitaku.mail.pop3 import MAX_LINE as POP3_MAX_LINE
from jitaku.mail.pop3 import Pop3Server
from jitaku.mail.queue import Queue
from jitaku.mail.smtp_server import Handler, Listener, protocol_factory
from jitaku.mail.spool import Spooler
from jitaku.passwords import Checker
from jitaku.ratelimit import LoginLimiter
from jitaku.store import Database
from jitaku.store.tallies import Tally
from jitaku.tls import server_context

PR_SET_PDEATHSIG = 1  # linux/prctl.h
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # malloc.h
LARGE_BLOCK = 1 << 20
HTTPS_PORT = 443
# Seconds for an implicit-TLS client to finish its handshake: only then is the connection counted against
# its listener's limits (asyncio's default is 60).
TLS_HANDSHAKE_TIMEOUT = 20.0
IPV6_ANY = ipaddress.IPv6Address("::")
TALLY_EVERY = 60.0  # seconds between flushes of each process's session and message counts

MX = Listener("mx", authenticated=False)
SUBMISSION = Listener("submission", authenticated=True)
SUBMISSIONS = Listener("submissions", authenticated=True, implicit_tls=True)
IMAP = Listener("imap", authenticated=True)
IMAPS = Listener("imaps", authenticated=True, implicit_tls=True)
POP3 = Listener("pop3", authenticated=True)
POP3S = Listener("pop3s", authenticated=True, implicit_tls=True)

# What each listener says to a connection over its limits, before closing it.
REFUSALS = {
    "imap": b"* BYE [UNAVAILABLE] Too many connections; try again later",  # RFC 5530
    "pop3": b"-ERR [SYS/TEMP] Too many connections; try again later",  # RFC 3206
}


@dataclass(frozen=True)
class Bound:
    """A listening socket, bound before any worker process is forked so that all of them accept on it, and
    its address: the port the kernel gave where the config says 0."""

    listener: Listener
    address: Listen
    sock: socket.socket


@dataclass(frozen=True)
class Sockets:
    """Every listener of the config, bound and listening."""

    smtp: list[Bound]  # MX and submission: every process accepts on them
    access: list[Bound]  # IMAP and POP3: the main process alone
    web: list[tuple[Listen, socket.socket]]  # each with the address it got


@contextlib.contextmanager
def listening(config: Config) -> Iterator[Sockets]:
    """Bind every listener, and close them all when the block ends.

    Before root is dropped (ports below 1024 need it; see jitaku.privileges) and before any worker forks
    (all of them accept on the same sockets). A listener that cannot be bound is a ServeError naming it,
    with none of the others left open.
    """
    ports.forget(config.data_dir)  # an earlier run's, until this one's are bound
    with contextlib.ExitStack() as opened:
        smtp = _bind(_listeners(config), opened)
        access = _bind(_access_listeners(config), opened)
        web = []
        for address in config.settings.web.listen:
            sock = _socket(address, "web")
            if sock is not None:
                web.append((_bound_address(address, opened.enter_context(sock)), sock))
        yield Sockets(smtp, access, web)


def _bound_address(address: Listen, sock: socket.socket) -> Listen:
    return Listen(address.host, sock.getsockname()[1])


def _socket(address: Listen, name: str) -> socket.socket | None:
    """A listening socket on ADDRESS; None for the IPv6 wildcard on a kernel without IPv6, so the same config
    serves on both kinds of line.

    An IPv6 socket takes IPv6 alone (IPV6_V6ONLY): "0.0.0.0:P" and "[::]:P" then bind side by side, whatever
    net.ipv6.bindv6only says, and no IPv4 client reaches us as ::ffff:a.b.c.d, an address that every
    per-address rule (loopback, limits, SPF, the Received header) would have to unmap first."""
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as error:
        if _no_ipv6(address, name, error):
            return None
        raise ServeError(f"cannot listen on {address} for {name}: {error.strerror or error}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address.host, address.port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError as error:
        sock.close()
        if _no_ipv6(address, name, error):
            return None
        raise ServeError(f"cannot listen on {address} for {name}: {error.strerror or error}") from None
    return sock


def _no_ipv6(address: Listen, name: str, error: OSError) -> bool:
    """Whether ERROR says this kernel has no IPv6 (booted with ipv6.disable=1, or a container without it) while
    binding the IPv6 wildcard: that listener is left out, said in the log. Any other address that cannot be
    bound stops the start, as a typo in it should."""
    try:
        wildcard = ipaddress.ip_address(address.host) == IPV6_ANY
    except ValueError:
        return False
    if not wildcard or error.errno not in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
        return False
    log.event("listener_skipped", listener=name, address=str(address), reason="no IPv6 on this host")
    return True


def run(config: Config, sockets: Sockets) -> None:
    """Fork `[smtp] workers - 1` accept-only processes on SOCKETS, and serve until SIGTERM.

    Python runs one core's worth of SMTP per process; extra workers accept and
    commit mail in parallel (the kernel spreads connections among them), while
    the queue runs in this process alone.
    """
    _unmap_large_blocks()
    raise_open_files_limit()
    listening = _listening(sockets)
    config = ports.listening_on(config, listening)
    children: list[int] = []
    try:
        ports.record(config.data_dir, listening)
        parent = os.getpid()
        for _ in range(config.settings.smtp.workers - 1):
            pid = os.fork()
            if pid == 0:
                os._exit(_worker(config, sockets.smtp, parent))
            children.append(pid)
        asyncio.run(serve(config, sockets.smtp, children, [sock for _address, sock in sockets.web], sockets.access))
    finally:
        _terminate(children)
        for pid in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        ports.forget(config.data_dir)


def _terminate(children: list[int]) -> None:
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


def _unmap_large_blocks() -> None:
    """Give every block of LARGE_BLOCK bytes or more its own mapping, returned to the system when freed.

    glibc's default adapts: once a large mapped block is freed, blocks that large come from the heap,
    which seldom shrinks; ten 22 MB messages left the daemon holding hundreds of MB (issue 15). A fixed
    threshold also stops the adapting of the trim threshold: keep it at twice, as glibc would.
    """
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)  # glibc's; other C libraries go without
    if mallopt is not None:
        mallopt(M_MMAP_THRESHOLD, LARGE_BLOCK)
        mallopt(M_TRIM_THRESHOLD, 2 * LARGE_BLOCK)


def _worker(config: Config, bound: list[Bound], parent: int) -> int:
    # Die with the main process, even by kill -9, rather than accept mail nobody will deliver.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        return 1
    try:
        asyncio.run(serve(config, bound, children=None))
        return 0
    except BaseException as error:  # noqa: BLE001 - a worker reports and exits; the main process notices
        log.event("worker_failed", pid=os.getpid(), error=repr(error))
        return 1


def _listeners(config: Config) -> list[tuple[Listener, tuple[Listen, ...]]]:
    settings = config.settings
    return [
        (MX, settings.smtp.listen),
        (SUBMISSION, settings.submission.listen),
        (SUBMISSIONS, settings.submissions.listen),
    ]


def _access_listeners(config: Config) -> list[tuple[Listener, tuple[Listen, ...]]]:
    """Where users read their mail: served by the main process alone (the SMTP workers only accept mail)."""
    settings = config.settings
    return [
        (IMAP, settings.imap.listen),
        (IMAPS, settings.imaps.listen),
        (POP3, settings.pop3.listen),
        (POP3S, settings.pop3s.listen),
    ]


def _bind(listeners: list[tuple[Listener, tuple[Listen, ...]]], opened: contextlib.ExitStack) -> list[Bound]:
    bound: list[Bound] = []
    for listener, addresses in listeners:
        for address in addresses:
            sock = _socket(address, listener.name)
            if sock is not None:
                bound.append(Bound(listener, _bound_address(address, opened.enter_context(sock)), sock))
    return bound


def _listening(sockets: Sockets) -> ports.Listening:
    """Every listener's addresses as bound, by listener name."""
    listening: ports.Listening = {name: () for name in ports.SECTIONS}
    for item in sockets.smtp + sockets.access:
        listening[item.listener.name] += (item.address,)
    listening["web"] = tuple(address for address, _sock in sockets.web)
    return listening


async def serve(
    config: Config,
    bound: list[Bound],
    children: list[int] | None,
    web: list[socket.socket] | None = None,
    access: list[Bound] | None = None,
) -> None:
    """Serve on BOUND sockets. CHILDREN is None in a worker; the main process also runs the queue, WEB,
    and the ACCESS listeners (POP3)."""
    settings = config.settings
    resolver.configure(settings.dns.nameservers)
    database = Database(config.database_url)
    try:
        await _run(config, database, bound, children, web or [], access or [])
    finally:
        database.close()


async def _run(
    config: Config,
    database: Database,
    bound: list[Bound],
    children: list[int] | None,
    web: list[socket.socket],
    access: list[Bound],
) -> None:
    settings = config.settings
    hostname = settings.mail_hostname
    keys = [
        key
        for domain in settings.domains
        for key in dkim.load_keys(config.dkim_dir, domain, settings.dkim.selector, settings.dkim.ed25519)
    ]
    policy = Policy(settings, database)
    signer = dkim.Signer(keys)
    main = children is not None
    # Set when mail is queued or left for a list; in a worker nobody waits on them: the main process's
    # queue and list runner poll every second anyway.
    queue_due, list_inbox = asyncio.Event(), asyncio.Event()
    pipeline = Pipeline(hostname, database, signer, wake=queue_due.set, wake_lists=list_inbox.set)
    queue = Queue(
        settings.queue,
        database,
        transport.build(settings.relay, settings.delivery, hostname),
        policy,
        hostname,
        postmaster=f"MAILER-DAEMON@{settings.domains[0]}",
        concurrency=settings.delivery.concurrency,
        pipeline=pipeline,
        wakeup=queue_due,
        on_personal_delivered=on_personal_delivered,
    )
    lists = ListEngine(database, signer, policy, pipeline, hostname, settings.web_url, list_inbox, queue.wake)
    checker = Checker(settings.login.hash_threads, settings.login.hash_queue)
    authenticator = Authenticator(database, LoginLimiter(database, settings.login), checker)
    tally = Tally(database, every=min(TALLY_EVERY, settings.health.interval))
    tls_context = server_context(config.tls_dir) if (config.tls_dir / "cert.pem").exists() else None
    handlers = {
        listener.name: Handler(listener, policy, pipeline, authenticator, settings.smtp.max_recipients, tally)
        for listener, _ in _listeners(config)
    }
    spooler = Spooler(config.data_dir)
    limits = _limits(config)
    sessions = OpenSessions()
    servers: list[asyncio.Server] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(AcceptErrors())
    try:
        for item in bound:
            name = item.listener.name
            factory = protocol_factory(
                handlers[name], hostname, tls_context, settings.smtp, spooler, limits[name], sessions
            )
            implicit = item.listener.implicit_tls
            servers.append(
                await loop.create_server(
                    factory,
                    sock=item.sock,
                    ssl=tls_context if implicit else None,
                    ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT if implicit else None,
                )
            )
        protocols = {
            "imap": (
                ImapServer(
                    database,
                    Logins(authenticator, Sessions(settings.imap.sessions_per_user_ip)),
                    tls_context,
                    settings.imap,
                    settings.smtp.max_message_size,
                ).serve,
                IMAP_MAX_LINE,
            ),
            "pop3": (
                Pop3Server(
                    database,
                    Logins(authenticator, Sessions(settings.pop3.sessions_per_user_ip)),
                    tls_context,
                    settings.pop3,
                ).serve,
                POP3_MAX_LINE,
            ),
        }
        for item in access:
            implicit = item.listener.implicit_tls
            protocol = item.listener.name.removesuffix("s")
            handle, limit = protocols[protocol]
            servers.append(
                await asyncio.start_server(
                    limited(
                        functools.partial(handle, implicit_tls=implicit),
                        limits[item.listener.name],
                        REFUSALS[protocol],
                        sessions,
                    ),
                    sock=item.sock,
                    ssl=tls_context if implicit else None,
                    ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT if implicit else None,
                    limit=limit,
                )
            )
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        log.event(
            "started",
            pid=os.getpid(),
            role="main" if main else "worker",
            hostname=hostname,
            data_dir=str(config.data_dir),
            listeners=",".join(str(item.address) for item in bound + access),
            relay=settings.relay.host if settings.relay else "direct-mx",
            open_files_limit=open_files_limit(),
        )
        async with asyncio.TaskGroup() as tasks:
            background = [tasks.create_task(tally.run())]
            if children is not None:  # the main process
                background.append(tasks.create_task(queue.run()))
                background.append(tasks.create_task(lists.run()))
                background.append(tasks.create_task(_watch(children, stop)))
            if main and settings.ddns:
                # imported only when configured: httpx and psutil would cost every process ~6 MB
                from jitaku.ddns.updater import Updater

                background.append(tasks.create_task(Updater(settings, config.data_dir, database).run()))
            if main and settings.health.enabled:
                from jitaku.health.monitor import Monitor

                background.append(tasks.create_task(Monitor(config, database).run()))
            if web:
                tasks.create_task(_web(config, database, authenticator, web, stop, limits["web"]))
            await stop.wait()
            _terminate(children or [])  # the workers say goodbye to their sessions while we do to ours
            for task in background:
                task.cancel()
            # Before the goodbyes: the health monitor may be probing our own listeners, and a probe that read a
            # goodbye for a greeting would record, and alert, a failure of ours.
            await asyncio.wait(background)
            for server in servers:
                server.close()  # no new sessions
            ended = await sessions.end()
        await tally.flush()
        log.event("stopped", pid=os.getpid(), hostname=hostname, sessions_ended=ended)
        if children is not None and len(children) < settings.smtp.workers - 1:
            raise ServeError("an SMTP worker process died; stopped everything (see the log)")
    finally:
        for server in servers:
            server.close()
        for server in servers:
            await server.wait_closed()
        checker.close()


def _limits(config: Config) -> dict[str, ConnectionLimit]:
    """Each listener section's connection limits, counted in this process (see jitaku.connections)."""
    sections = {name: getattr(config.settings, section) for name, section in ports.SECTIONS.items()}
    return {
        name: ConnectionLimit(name, section.max_connections_per_ip, section.max_connections)
        for name, section in sections.items()
    }


async def _watch(children: list[int], stop: asyncio.Event) -> None:
    """A worker that dies takes the daemon down loudly, for the supervisor to restart it whole."""
    while children:
        for pid in children:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                children.remove(pid)
                log.event("worker_died", pid=pid, status=status)
                stop.set()
                return
        await asyncio.sleep(1.0)


async def _web(
    config: Config,
    database: Database,
    authenticator: Authenticator,
    sockets: list[socket.socket],
    stop: asyncio.Event,
    limit: ConnectionLimit,
) -> None:
    """uvicorn on sockets bound before any fork; stopped by our own signal handling, not uvicorn's.

    Port 443 speaks HTTPS with the certificate in tls/, every other port plain HTTP.
    """
    import uvicorn

    from jitaku.web import protocol, status

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # SIGTERM is the daemon's to handle; it stops us through `stop`

    app = status.build(config, database, authenticator)
    cert, key = config.tls_dir / "cert.pem", config.tls_dir / "key.pem"
    servers: list[tuple[uvicorn.Server, list[socket.socket]]] = []
    for group, tls in (
        ([s for s in sockets if s.getsockname()[1] != HTTPS_PORT], False),
        ([s for s in sockets if s.getsockname()[1] == HTTPS_PORT], True),
    ):
        if group:
            settings = uvicorn.Config(
                app,
                http=protocol.protocol(limit, config.settings.web.header_timeout, config.settings.web.idle_timeout),
                log_level="warning",
                access_log=False,
                lifespan="off",
                ssl_certfile=str(cert) if tls else None,
                ssl_keyfile=str(key) if tls else None,
            )
            servers.append((Server(settings), group))

    def shut_down(_: object) -> None:
        for server, _group in servers:
            server.should_exit = True

    watcher = asyncio.create_task(stop.wait())
    watcher.add_done_callback(shut_down)
    try:
        await asyncio.gather(*(server.serve(sockets=group) for server, group in servers))
    finally:
        watcher.cancel()
