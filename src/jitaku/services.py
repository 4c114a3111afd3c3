"""The daemon's services, wired: the store, the inbound pipeline, the queue, the list runner, the SMTP, IMAP,
POP3 and web servers of one process, run until SIGTERM (app.py binds the sockets and forks the processes), or, in
the main process, until the box's part in the pair changes (an Outcome): app.py then stops the workers and starts
every process's services again, in the new mode (jitaku.ha.mode), on the same sockets.

The servers are given duplicates of the bound sockets (asyncio and uvicorn close the sockets they serve on when
they stop): the bound ones stay open, with the connections that arrive meanwhile queued in their backlog."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

from jitaku import event_loop, heap, log, ports, resolver, workers
from jitaku.config import Config, Listen
from jitaku.connections import AcceptErrors, ConnectionLimit, OpenSessions, limited, open_files_limit
from jitaku.errors import ServeError
from jitaku.ha import role, secret_files
from jitaku.ha.mode import FENCED, PRIMARY, STANDBY, WAITING, Mode
from jitaku.health.result import State
from jitaku.lists.bounces import on_personal_delivered
from jitaku.lists.requests import Requests
from jitaku.lists.runner import ListRunner, node_id
from jitaku.mail import dkim, transport
from jitaku.mail.filters.greylist import Greylisting
from jitaku.mail.filters.scanning import Scanning, learning_on, scanners
from jitaku.mail.imap.server import MAX_LINE as IMAP_MAX_LINE
from jitaku.mail.imap.server import ImapServer
from jitaku.mail.login import Authenticator, Logins, Sessions
from jitaku.mail.pipeline import Pipeline
from jitaku.mail.policy import Policy
from jitaku.mail.pop3 import MAX_LINE as POP3_MAX_LINE
from jitaku.mail.pop3 import Pop3Server
from jitaku.mail.queue import Queue
from jitaku.mail.smtp.protocol import SmtpProtocol
from jitaku.mail.smtp_server import Handler, Listener
from jitaku.mail.spool import Spooler
from jitaku.passwords import Checker
from jitaku.ratelimit import LoginLimiter, MemoryLoginLimiter
from jitaku.store import Database
from jitaku.store.tallies import Tally
from jitaku.tls import RealCertificate, server_context
from jitaku.tls_reload import Reloader
from jitaku.web.comment_mail import LocalMail

if TYPE_CHECKING:
    from jitaku.ha.address import FloatingAddress
    from jitaku.ha.sync import Facts
    from jitaku.health.monitor import Monitor
    from jitaku.health.result import Result

T = TypeVar("T")
# Seconds for an implicit-TLS client to finish its handshake: only then is the connection counted against
# its listener's limits (asyncio's default is 60).
TLS_HANDSHAKE_TIMEOUT = 20.0
TALLY_EVERY = 60.0  # seconds between flushes of each process's session and message counts
WEB_SHUTDOWN = 10.0  # seconds uvicorn's graceful shutdown may take: requests still running then are cut
ADDRESS_RETRY = 5.0  # seconds between a primary's tries to take the floating address it could not take
UNFENCED_POLL = 1.0  # seconds between a fenced box's looks at whether its part was taken back as the primary
WAIT_EVERY = 2.0  # seconds between a waiting box's looks at its peer after a cold start (jitaku.ha.mode's "waiting")
WAIT_LOOK = 10.0  # seconds a waiting box awaits its look (the peer's 3 s, and two connections to its own cluster's)
WAIT_RETRY = 10.0  # seconds before a waiting box whose wait is spent asks a witness that could not be asked again,
# or looks again at a floating address another machine answers for

MX = Listener("mx", authenticated=False)
SUBMISSION = Listener("submission", authenticated=True)
SUBMISSIONS = Listener("submissions", authenticated=True, implicit_tls=True)
IMAP = Listener("imap", authenticated=True)
IMAPS = Listener("imaps", authenticated=True, implicit_tls=True)
IMAP_LISTENERS = (IMAP, IMAPS)  # what `[imap] workers` processes serve beside the main one
POP3 = Listener("pop3", authenticated=True)
POP3S = Listener("pop3s", authenticated=True, implicit_tls=True)

# What each listener says to a connection over its limits, before closing it.
REFUSALS = {
    "imap": b"* BYE [UNAVAILABLE] Too many connections; try again later",  # RFC 5530
    "pop3": b"-ERR [SYS/TEMP] Too many connections; try again later",  # RFC 3206
}
# What a standby's listeners say to every connection, before closing it: its database is the primary's, read-only.
STANDBY_REFUSALS = {
    "smtp": "421 4.3.2 {host} is a standby and takes no mail; try the primary",  # RFC 3463: system not accepting
    "imap": "* BYE [UNAVAILABLE] {host} is a standby; read your mail on the primary",
    "pop3": "-ERR [SYS/TEMP] {host} is a standby; read your mail on the primary",
}
# What a fenced box's listeners say (jitaku.ha.fence): it was the primary, and the other box is now.
FENCED_REFUSALS = {
    "smtp": "421 4.3.2 {host} is fenced: the other box of the pair is the primary",
    "imap": "* BYE [UNAVAILABLE] {host} is fenced: the other box of the pair is the primary",
    "pop3": "-ERR [SYS/TEMP] {host} is fenced: the other box of the pair is the primary",
}
# What a primary waiting for its peer after a cold start says (jitaku.ha.mode): the other box may be the primary.
WAITING_REFUSALS = {
    "smtp": "421 4.3.2 {host} is waiting for the other box of the pair (cold start)",
    "imap": "* BYE [UNAVAILABLE] {host} is waiting for the other box of the pair (cold start)",
    "pop3": "-ERR [SYS/TEMP] {host} is waiting for the other box of the pair (cold start)",
}
REFUSALS_OF = {STANDBY: STANDBY_REFUSALS, FENCED: FENCED_REFUSALS, WAITING: WAITING_REFUSALS}

# Why serve() ended: SIGTERM ("stopped", and always in a worker); a standby's cluster promoted ("promoted"); the
# web's fence endpoint, or a newer primary seen ("fenced"); a fenced box's switchover re-join done, the cluster a
# standby now ("rejoined"); a box's wait after a cold start over: its peer seen ("decided": the mode is decided again,
# with a look at it), or the wait spent and nobody else seen serving ("alone": it serves as the primary).
Outcome = Literal["stopped", "promoted", "fenced", "rejoined", "decided", "alone"]


@dataclass(frozen=True)
class Bound:
    """A listening socket, bound before any worker process is forked so that all of them accept on it, and
    its address: the port the kernel gave where the config says 0."""

    listener: Listener
    address: Listen
    sock: socket.socket


def smtp_listeners(config: Config) -> list[tuple[Listener, tuple[Listen, ...]]]:
    settings = config.settings
    return [
        (MX, settings.smtp.listen),
        (SUBMISSION, settings.submission.listen),
        (SUBMISSIONS, settings.submissions.listen),
    ]


def access_listeners(config: Config) -> list[tuple[Listener, tuple[Listen, ...]]]:
    """Where users read their mail: IMAP by `[imap] workers` processes, POP3 by the main process alone."""
    settings = config.settings
    return [
        (IMAP, settings.imap.listen),
        (IMAPS, settings.imaps.listen),
        (POP3, settings.pop3.listen),
        (POP3S, settings.pop3s.listen),
    ]


async def serve(
    config: Config,
    mode: Mode,
    bound: list[Bound],
    children: list[int] | None,
    web: list[socket.socket] | None = None,
    access: list[Bound] | None = None,
    after: Outcome | None = None,
    terminated: Callable[[], bool] | None = None,
) -> Outcome:
    """Serve SMTP on BOUND sockets and IMAP or POP3 on ACCESS, in MODE (the main process decided it before it forked
    the workers). CHILDREN is None in a worker; the main process also runs the queue, the lists and WEB. AFTER is
    what ended this process's previous services, if any: after "promoted", the new primary's monitor says so.
    TERMINATED says whether SIGTERM came before this process's handler was installed: the services then stop."""
    settings = config.settings
    resolver.configure(settings.dns.nameservers)
    database = Database(config.database_url)
    try:
        return await _run(config, database, bound, children, web or [], access or [], mode, after, terminated)
    finally:
        database.close()


class _Ending:
    """How the services end: STOP set, with the outcome of whoever ended them first, but SIGTERM's ("stopped")
    over any other: a daemon told to stop while it changes its part in the pair stops, rather than serve again."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.closed = asyncio.Event()  # set once this process's mail listeners take no new connection
        self.outcome: Outcome = "stopped"

    def end(self, outcome: Outcome) -> None:
        if not self.stop.is_set():
            self.outcome = outcome
            self.stop.set()

    def terminate(self) -> None:
        self.outcome = "stopped"
        self.stop.set()


async def _run(
    config: Config,
    database: Database,
    bound: list[Bound],
    children: list[int] | None,
    web: list[socket.socket],
    access: list[Bound],
    mode: Mode = PRIMARY,
    after: Outcome | None = None,
    terminated: Callable[[], bool] | None = None,
) -> Outcome:
    """A standby (MODE "standby": its database is a standby's, read-only), a fenced box (MODE "fenced": it must not
    act as the primary it was) and a primary waiting for its peer after a cold start (MODE "waiting": it may not be
    the primary any more) serve alike: their mail listeners say why to every client and close; nothing
    that writes runs (the queue, the lists, DDNS, the session tallies); the web serves what only reads, and the
    health checks keep their results in a file of their own (jitaku.health.standby_file). Only a primary's main
    process holds the floating address (`[ha] address`)."""
    settings = config.settings
    standby = mode != PRIMARY  # nothing writes
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
    scanning = Scanning(settings.filters, scanners(settings.filters))
    tally = Tally(database, every=min(TALLY_EVERY, settings.health.interval))
    pipeline = Pipeline(
        hostname,
        database,
        signer,
        wake=queue_due.set,
        wake_lists=list_inbox.set,
        filters=settings.filters,
        scanning=scanning,
        count=tally.count,
    )
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
    lists = ListRunner(
        database,
        signer,
        policy,
        pipeline,
        hostname,
        settings.web_url,
        list_inbox,
        queue.wake,
        node=node_id(config.data_dir),
    )
    checker = Checker(settings.login.hash_threads, settings.login.hash_queue)
    # a standby's store is read-only: its web admin's failed logins are counted in memory
    limiter = MemoryLoginLimiter(settings.login) if standby else LoginLimiter(database, settings.login)
    authenticator = Authenticator(database, limiter, checker)
    greylisting = Greylisting(settings.filters.greylist, database) if settings.filters.greylist.enabled else None
    tls_context = server_context(config.tls_dir) if (config.tls_dir / "cert.pem").exists() else None
    certificates = Reloader(config.tls_dir, [tls_context] if tls_context else [])  # this process's own contexts
    handlers = {
        listener.name: Handler(
            listener, policy, pipeline, authenticator, settings.smtp.max_recipients, tally, greylisting
        )
        for listener, _ in smtp_listeners(config)
    }
    spooler = Spooler(config.data_dir)
    limits = _limits(config)
    sessions = OpenSessions()
    servers: list[asyncio.Server] = []
    replication: asyncio.Task[None] | None = None
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(AcceptErrors())
    ending = _Ending()
    stop = ending.stop
    notices: list[tuple[State, str, str]] = []  # for the health monitor to alert, once it runs
    address = _floating_address(config) if main else None
    held = True
    try:
        if address is not None:
            held = await _hold_address(address, mode == PRIMARY, notices)  # a primary's before its listeners accept
        if standby:  # every mail listener says why it serves nothing
            refusals = REFUSALS_OF[mode]
            for item in bound:
                servers.append(await _refuse(loop, item, refusals["smtp"], hostname, tls_context))
            for item in access:
                protocol = item.listener.name.removesuffix("s")
                servers.append(await _refuse(loop, item, refusals[protocol], hostname, tls_context))
        else:
            for item in bound:
                name = item.listener.name
                factory = functools.partial(
                    SmtpProtocol,
                    handlers[name],
                    hostname,
                    tls_context,
                    settings.smtp,
                    spooler,
                    limits[name],
                    sessions,
                    loop,
                )
                implicit = item.listener.implicit_tls
                servers.append(
                    await loop.create_server(
                        factory,
                        sock=item.sock.dup(),
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
                        training=learning_on(settings.filters),
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
                        sock=item.sock.dup(),
                        ssl=tls_context if implicit else None,
                        ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT if implicit else None,
                        limit=limit,
                    )
                )
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, ending.terminate)
        if terminated is not None and terminated():  # it came before the handler above: noted by app.run's
            ending.terminate()
        log.event(
            "started",
            pid=os.getpid(),
            role="main" if main else "worker",
            database_role=role.STANDBY if standby else role.PRIMARY,
            mode=mode,
            hostname=hostname,
            data_dir=str(config.data_dir),
            listeners=",".join(str(item.address) for item in bound + access),
            relay=settings.relay.host if settings.relay else "direct-mx",
            open_files_limit=open_files_limit(),
            event_loop=event_loop.name(),
        )
        async with asyncio.TaskGroup() as tasks:
            background = [tasks.create_task(heap.give_back_regularly()), tasks.create_task(certificates.run())]
            if not standby:
                background.append(tasks.create_task(tally.run()))
            if children is not None:
                background.append(tasks.create_task(workers.watch(children, stop)))
            if main:  # the pair's secret files: published on a primary, mirrored on a standby (ha/secret_files.py)
                background.append(tasks.create_task(secret_files.keep(config, database, standby)))
            if children is not None and not standby:  # the main process
                background.append(tasks.create_task(queue.run()))
                background.append(tasks.create_task(lists.run()))
                if learning_on(settings.filters):  # moves in and out of Junk teach the spam engines
                    from jitaku.mail.filters.learning import Learning, learners

                    background.append(tasks.create_task(Learning(database, learners(settings.filters)).run()))
            if main and settings.ddns and not standby:
                # imported only when configured: httpx and psutil would cost every process ~6 MB
                from jitaku.ddns.updater import Updater

                background.append(tasks.create_task(Updater(settings, config.data_dir, database).run()))
            if main and settings.acme.enabled and not standby:  # a standby serves its primary's certificate
                from jitaku.acme.renewal import keep_renewed

                background.append(tasks.create_task(keep_renewed(config)))
            if main and settings.backup.enabled and settings.backup.every and not standby:  # a standby's waits
                from jitaku.backup.schedule import keep_backed_up

                background.append(tasks.create_task(keep_backed_up(config)))
            monitor: Monitor | None = None
            if main and settings.health.enabled and standby:
                from jitaku.health.standby_file import LocalMonitor

                monitor = LocalMonitor(config, database, waiting=mode == WAITING)
                background.append(tasks.create_task(monitor.run()))
            if main and settings.health.enabled and not standby:
                from jitaku.health.monitor import Monitor

                monitor = Monitor(config, database)
                background.append(tasks.create_task(monitor.run()))
            if main and mode == PRIMARY and after == "promoted":
                from jitaku.ha import auto

                notices.append(_promoted(hostname, auto.promotion()))
            if monitor is not None and notices:
                background.append(tasks.create_task(_announce(monitor, notices)))
            if main and mode == STANDBY and role.postgresql(config):
                background.append(tasks.create_task(_until_promoted(config, ending)))
                if settings.ha.auto_after > 0:
                    background.append(tasks.create_task(_watch_primary(config, monitor, ending)))
            if main and mode == FENCED:
                background.append(tasks.create_task(_rejoin(config, ending, monitor)))
                if role.postgresql(config):
                    background.append(tasks.create_task(_until_unfenced(config, ending)))
            if main and mode == PRIMARY and role.postgresql(config):
                background.append(tasks.create_task(_watch_peer(config, ending, monitor)))
            if main and mode == WAITING:
                background.append(tasks.create_task(_until_decided(config, ending, monitor)))
            if address is not None and mode == PRIMARY and not held:
                background.append(tasks.create_task(_keep_taking(address)))

            async def fenced() -> None:
                """The fence endpoint's: the services end, and once this process's mail listeners take no new
                connection, the floating address goes; the endpoint answers 202 after (bounded)."""
                ending.end("fenced")
                await ending.closed.wait()
                if address is not None and mode == PRIMARY:
                    await _release_address(address)

            if main and settings.database.managed and not standby:
                # synchronous replication while a standby keeps up, asynchronous (and an alert) while it does not;
                # not among `tasks`: it outlives them, since the last commits of the shutdown may wait for a standby
                # gone meanwhile, and only it stops them waiting
                from jitaku.ha.sync import Synchronizer
                from jitaku.health import replication as verdict

                def judge(facts: Facts, wall: float, lost_at: float | None) -> Result:
                    return verdict.check(facts, settings.ha.sync_timeout, wall, lost_at)

                report = monitor.judge if monitor is not None and not standby else None
                replication = asyncio.create_task(Synchronizer(config, judge, report, _ha_alert(monitor)).run())
            if web:
                mail = LocalMail(policy, pipeline)
                tasks.create_task(
                    _web(
                        config,
                        database,
                        authenticator,
                        lists.requests,
                        mail,
                        web,
                        stop,
                        limits["web"],
                        certificates,
                        standby,
                        on_fence=fenced,
                        waiting=mode == WAITING,
                    )
                )
            await stop.wait()
            workers.terminate(children or [])  # the workers say goodbye to their sessions while we do to ours
            if monitor is None:  # nothing probes our listeners: no new session from now on
                for server in servers:
                    server.close()
            for task in background:
                task.cancel()
            # Before the goodbyes: the health monitor may be probing our own listeners, and a probe that read a
            # goodbye for a greeting would record, and alert, a failure of ours.
            await asyncio.wait(background)
            for server in servers:
                server.close()  # no new sessions
            ending.closed.set()
            ended = await sessions.end()
        if not standby:
            await tally.flush()
        log.event("stopped", pid=os.getpid(), hostname=hostname, sessions_ended=ended, outcome=ending.outcome)
        if children is not None and len(children) < max(settings.smtp.workers, settings.imap.workers) - 1:
            raise ServeError("a worker process died; stopped everything (see the log)")
        return ending.outcome
    finally:
        if replication is not None:
            replication.cancel()
            await asyncio.wait([replication])
        if address is not None and mode == PRIMARY:  # stopped, fenced, or a worker died: the address goes
            await _release_address(address)
        for server in servers:
            server.close()
        for server in servers:
            await server.wait_closed()
        await scanning.close()
        checker.close()


class _Refusal(asyncio.Protocol):
    """Says one line to a connection, and closes it."""

    def __init__(self, line: bytes) -> None:
        self._line = line

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        writer = cast(asyncio.WriteTransport, transport)  # uvloop's transports do not subclass asyncio's
        writer.write(self._line)
        writer.close()


async def _refuse(
    loop: asyncio.AbstractEventLoop, item: Bound, said: str, hostname: str, tls: ssl.SSLContext | None
) -> asyncio.Server:
    """A standby's or a fenced box's listener: bound as a primary's is (a promotion starts the services again on the
    same sockets, and a client is told why rather than refused a connection), saying SAID to every client."""
    line = said.format(host=hostname).encode() + b"\r\n"
    implicit = item.listener.implicit_tls
    return await loop.create_server(
        functools.partial(_Refusal, line),
        sock=item.sock.dup(),
        ssl=tls if implicit else None,
        ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT if implicit else None,
    )


def _limits(config: Config) -> dict[str, ConnectionLimit]:
    """Each listener section's connection limits, counted in this process (see jitaku.connections)."""
    sections = {name: getattr(config.settings, section) for name, section in ports.SECTIONS.items()}
    return {
        name: ConnectionLimit(name, section.max_connections_per_ip, section.max_connections)
        for name, section in sections.items()
    }


async def _web(
    config: Config,
    database: Database,
    authenticator: Authenticator,
    requests: Requests,
    mail: LocalMail,
    sockets: list[socket.socket],
    stop: asyncio.Event,
    limit: ConnectionLimit,
    certificates: Reloader,
    read_only: bool = False,
    on_fence: Callable[[], Awaitable[None]] | None = None,
    waiting: bool = False,
) -> None:
    """uvicorn on sockets bound before any fork; stopped by our own signal handling, not uvicorn's.

    Port 443 speaks HTTPS with the certificate in tls/ (reloaded by CERTIFICATES when it changes), every other port
    plain HTTP; once that certificate is a real one, port 80 redirects to HTTPS and port 443 adds HSTS.
    READ_ONLY (a standby, a fenced box, a waiting one): every request that would write is answered 503; WAITING (a
    primary waiting for its peer after a cold start) says so to the peer's state requests. ON_FENCE ends the services
    with outcome "fenced" (the fence endpoint awaits it once the fence file is written, before its 202). Stopped,
    uvicorn lets the requests under way finish for WEB_SHUTDOWN seconds at most.
    """
    import uvicorn

    from jitaku.web import https, protocol, status

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # SIGTERM is the daemon's to handle; it stops us through `stop`

    app = status.build(
        config, database, authenticator, requests, mail, standby=read_only, on_fence=on_fence, waiting=waiting
    )
    if read_only:
        from jitaku.web.read_only import read_only as only_reads

        app = only_reads(app)
    cert, key = config.tls_dir / "cert.pem", config.tls_dir / "key.pem"
    real = RealCertificate(config.tls_dir)
    servers: list[tuple[uvicorn.Server, list[socket.socket]]] = []
    http, tls_port = ports.HTTP_PORT, ports.HTTPS_PORT
    for group, tls, served in (
        # other plain ports (the default install's loopback 8025) never redirect: nothing serves HTTPS beside them
        ([s for s in sockets if s.getsockname()[1] not in (http, tls_port)], False, app),
        ([s for s in sockets if s.getsockname()[1] == http], False, https.ToHttps(app, real, config.settings)),
        ([s for s in sockets if s.getsockname()[1] == tls_port], True, https.Hsts(app, real)),
    ):
        if group:
            settings = uvicorn.Config(
                served,
                http=protocol.protocol(limit, config.settings.web.header_timeout, config.settings.web.idle_timeout),
                log_level="warning",
                access_log=False,
                lifespan="off",
                ssl_certfile=str(cert) if tls else None,
                ssl_keyfile=str(key) if tls else None,
                timeout_graceful_shutdown=int(WEB_SHUTDOWN),
            )
            if tls:
                settings.load()  # as serve would: its SSLContext made now, to be reloaded in place
                assert settings.ssl is not None
                certificates.add(settings.ssl)
            servers.append((Server(settings), group))

    def shut_down(_: object) -> None:
        for server, _group in servers:
            server.should_exit = True

    watcher = asyncio.create_task(stop.wait())
    watcher.add_done_callback(shut_down)
    try:
        await asyncio.gather(*(server.serve(sockets=[sock.dup() for sock in group]) for server, group in servers))
    finally:
        watcher.cancel()


def _floating_address(config: Config) -> FloatingAddress | None:
    if config.settings.ha.address is None:
        return None
    from jitaku.ha.address import FloatingAddress

    return FloatingAddress.configured(config.settings.ha)


async def _hold_address(address: FloatingAddress, primary: bool, notices: list[tuple[State, str, str]]) -> bool:
    """A primary takes the floating address; a standby or a fenced box lets go of it, if it holds it (a primary
    that restarts fenced). A primary that cannot take it serves anyway, and alerts: its database is the one that
    takes writes, and whatever reaches it directly (the LAN, its own address) must still be accepted; what the
    router forwards goes wherever the address is, which the alert asks a person to look at (another box that
    answers for it, a daemon without CAP_NET_ADMIN, a missing interface), and it tries again (_keep_taking).
    Whether the address is as it should be: False for a primary that could not take it."""
    from jitaku.ha.address import AddressError

    if not primary:
        await _release_address(address)
        return True
    try:
        await asyncio.to_thread(address.take)
    except AddressError as error:
        log.event("ha_address_failed", address=str(address), error=str(error))
        sentence = f"this primary could not take the floating address {address}: {error}. It serves anyway."
        ja = f"このプライマリはフローティングアドレス {address} を取得できませんでした: {error}。サービスは続けます。"
        notices.append((State.CRITICAL, sentence, ja))
        return False
    return True


async def _keep_taking(address: FloatingAddress) -> None:
    """A primary that could not take the floating address tries again every ADDRESS_RETRY seconds until it holds
    it (the failure was alerted once, by _hold_address; each new reason is logged)."""
    from jitaku.ha.address import AddressError

    said = ""
    while True:
        await asyncio.sleep(ADDRESS_RETRY)
        try:
            await asyncio.to_thread(address.take)
        except AddressError as error:
            if str(error) != said:
                said = str(error)
                log.event("ha_address_failed", address=str(address), error=said, retrying=ADDRESS_RETRY)
            continue
        return


async def _release_address(address: FloatingAddress) -> None:
    from jitaku.ha.address import AddressError

    try:
        await asyncio.to_thread(address.release)
    except AddressError as error:
        log.event("ha_address_failed", address=str(address), error=str(error))


def _promoted(hostname: str, automatic: tuple[str, str] | None) -> tuple[State, str, str]:
    """The new primary's alert; AUTOMATIC: why it promoted itself (jitaku.ha.auto), when it did, (en, ja)."""
    at = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    how, how_ja = "its PostgreSQL was promoted", "PostgreSQL が昇格しました"
    if automatic is not None:
        how = f"it promoted itself automatically ([ha] auto_after): {automatic[0]}"
        how_ja = f"自動フェイルオーバー([ha] auto_after)で自ら昇格しました: {automatic[1]}"
    return (
        State.WARNING,
        f"{hostname} became the primary at {at}: {how}, and it takes mail now. "
        "The pair has no standby until the other box re-joins as this one's (by itself after a switchover, "
        "else by `jitaku standby setup` there).",
        f"{hostname} は {at} にプライマリになりました({how_ja})。メールはこちらで受け付けます。"
        "もう一台がこちらのスタンバイとして再参加する(スイッチオーバーなら自動、ほかはそちらで "
        "`jitaku standby setup`)までスタンバイはありません。",
    )


async def _announce(monitor: Monitor, notices: list[tuple[State, str, str]]) -> None:
    for state, sentence, ja in notices:
        await monitor.announce("ha", state, sentence, ja)


async def _until_promoted(config: Config, ending: _Ending) -> None:
    """A standby's services end with outcome "promoted" once its cluster is no longer in recovery."""
    await role.until_promoted(config)
    log.event("ha_promoted", hostname=config.settings.mail_hostname)
    ending.end("promoted")


async def _watch_primary(config: Config, monitor: Monitor | None, ending: _Ending) -> None:
    """A standby's automatic failover ([ha] auto_after, jitaku.ha.auto): it promotes this box's cluster when its
    primary is dead beyond doubt, and _until_promoted then ends the services; its alerts are "ha" alerts. It never
    promotes once the services end (SIGTERM), and says its alerts are over when they end with a promotion."""
    from jitaku.ha import auto

    states = {auto.Level.CRITICAL: State.CRITICAL, auto.Level.WARNING: State.WARNING, auto.Level.OVER: State.OK}

    async def alert(sentence: str, ja: str, level: auto.Level) -> None:
        await _alert(monitor, sentence, ja, states[level])

    await auto.watch(config, alert, lambda: ending.outcome if ending.stop.is_set() else None)


async def _until_unfenced(config: Config, ending: _Ending) -> None:
    """A fenced box's services end with outcome "promoted" once its fence file is gone and its cluster is a
    primary: `jitaku failover --force` took the primary's part back after a switchover that never promoted the
    other box (jitaku.ha.failover). A re-join that clears the fence leaves a standby: not this."""
    from jitaku.ha import fence

    def unfenced() -> bool:
        if fence.read(config) is not None:
            return False
        try:
            return role.current(config) == role.PRIMARY
        except Exception:  # noqa: BLE001 - a cluster stopped or restarting: look again
            return False

    while not await asyncio.to_thread(unfenced):
        await asyncio.sleep(UNFENCED_POLL)
    log.event("ha_unfenced", hostname=config.settings.mail_hostname)
    ending.end("promoted")


def _off_the_loop(call: Callable[[], T]) -> asyncio.Future[T]:
    """CALL's result, from a daemon thread of its own: a look at the peer and this box's cluster. The event loop's
    end waits for every thread of asyncio.to_thread's, where nothing cancels a look that takes its time (a peer
    half there, a cluster that hangs): a stop must not wait for it (its own timeouts end it)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():  # cancelled: nobody awaits it any more
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(cast(T, result))

    def run() -> None:
        result, error = None, None
        try:
            result = call()
        except Exception as raised:  # noqa: BLE001 - the awaiting task's to see
            error = raised
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: the services stopped
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="jitaku-look", daemon=True).start()
    return future


async def _watch_peer(config: Config, ending: _Ending, monitor: Monitor | None) -> None:
    """A primary looks at its peer every PEER_EVERY seconds (jitaku.ha.mode.look, in a thread, bounded): a peer
    that is an unfenced primary on a newer timeline ends the services with outcome "fenced", the split-brain fence
    written; a peer that answers but refuses us is logged, and alerted, each time what it says changes, and the
    alert cleared (a recovery) once it answers as a peer should again; a silent one or a 5xx changes nothing."""
    from jitaku.ha import fence
    from jitaku.ha import mode as ha_mode

    refused: str | None = None
    while True:
        await asyncio.sleep(ha_mode.PEER_EVERY)
        try:
            seen = await asyncio.wait_for(_off_the_loop(lambda: ha_mode.look(config)), ha_mode.PEER_EVERY)
        except Exception as error:  # noqa: BLE001 - our own database or a slow peer: next time
            log.event("ha_peer_unknown", error=f"{type(error).__name__}: {error}"[:300])
            continue
        if seen.newer is not None:
            await asyncio.to_thread(fence.write, config, fence.Fence("split-brain", seen.newer, time.time()))
            ending.end("fenced")
            return
        if seen.refused == refused or (seen.refused is None and not seen.answered):  # unreachable, a 5xx: unknown
            continue
        was, refused = refused, seen.refused
        if refused is None:
            log.event("ha_peer_answers")
            await _alert(monitor, *_answering(was), State.OK)
            continue
        log.event("ha_peer_refuses", error=refused)
        await _alert(monitor, *_refusing(refused))


async def _until_decided(config: Config, ending: _Ending, monitor: Monitor | None) -> None:
    """A primary waiting after a cold start (jitaku.ha.mode's "waiting") looks every WAIT_EVERY seconds (in a thread,
    bounded) at its peer and at its own replication slots. Once the peer answers as a peer should, or a standby
    streams from this box, the services end with outcome "decided": the mode is decided again with the peer in sight
    (a standby leaves it the primary); a peer that is a primary on a newer timeline fences this box, as _watch_peer
    does, and ends them "fenced". A peer that refuses us (403: clocks apart,
    another secret) is there, and may be the primary: this box keeps waiting while it refuses, and says so once.
    Once `[ha] cold_start_wait` seconds have passed since the wait began (ha_mode.wait_began: the first of this
    process's waits since it last served) with the peer silent, the witness is asked,
    and again each cold_start_wait seconds after: while it reaches the pair's services (another box may serve them)
    this box takes nothing, and says so once; a configured witness that cannot be asked (down, like the router after a
    power cut) is not known either way: it is asked again each WAIT_RETRY seconds, said once. When it does not reach
    them, or no witness is configured, and no other machine answers for the floating address (looked at again each
    WAIT_RETRY seconds while one does, said once), the services end "alone", and this box serves as the primary
    alone, with a warning, without another look at its peer."""
    from jitaku.ha import fence, witness
    from jitaku.ha import mode as ha_mode

    def look() -> tuple[ha_mode.Seen, bool]:
        return ha_mode.look(config), ha_mode.paired(config)[1]

    wait = config.settings.ha.cold_start_wait
    began = ha_mode.wait_began()  # the first wait's start: one that saw its peer and waits again goes on
    ask_at = began + wait
    alerted: set[str] = set()  # the events that kept this box waiting, each alerted once
    failing = ""  # why the last look failed, logged once

    async def once(event: str, alert: tuple[str, str], **fields: Any) -> None:
        if event not in alerted:
            alerted.add(event)
            log.event(event, **fields)
            await _alert(monitor, *alert)

    async def decided(seen: ha_mode.Seen, streamed: bool) -> bool:
        """Whether what was seen ends the wait (the services' outcome given)."""
        nonlocal ask_at
        if seen.newer is not None:  # promoted while this box was off: two primaries, this one the older
            await asyncio.to_thread(fence.write, config, fence.Fence("split-brain", seen.newer, time.time()))
            log.event("ha_wait_over", why="a newer primary", waited=round(time.monotonic() - began, 1))
            ending.end("fenced")
            return True
        if seen.answered or streamed:
            why = "a standby streams from this box" if streamed else "the peer answered"
            log.event("ha_wait_over", why=why, waited=round(time.monotonic() - began, 1))
            if alerted:
                await _alert(monitor, *_seen_again(why), State.OK)
            ending.end("decided")
            return True
        if seen.refused is not None:  # the peer is there, and may be the primary: this box takes nothing
            await once("ha_peer_refuses", _refusing_waiting(seen.refused), error=seen.refused)
            return False
        if time.monotonic() < ask_at:
            return False
        try:
            answer = await witness.ask(config)
        except Exception as error:  # noqa: BLE001 - a witness that cannot be asked is not known either way
            answer = witness.Answer(witness.Seen.UNKNOWN, f"cannot ask the witness: {error!r}"[:300])
        if answer.seen == witness.Seen.ANSWERS:
            ask_at = time.monotonic() + wait
            await once("ha_witness_answers", _witness_answers(answer.words), witness=answer.words)
            return False
        if answer.seen == witness.Seen.UNKNOWN and witness.configured(config):  # down, like the router, maybe
            ask_at = time.monotonic() + WAIT_RETRY
            await once("ha_witness_unknown", _witness_unknown(answer.words), witness=answer.words)
            return False
        if await asyncio.to_thread(ha_mode.address_elsewhere, config):  # another box may serve as the primary
            ask_at = time.monotonic() + WAIT_RETRY
            await once("ha_address_elsewhere", _address_held(config), address=str(config.settings.ha.address))
            return False
        waited = time.monotonic() - began
        log.event("ha_wait_over", why="alone", waited=round(waited, 1), witness=answer.words)
        await _alert(monitor, *_alone(config.settings.mail_hostname, waited, answer.words), State.WARNING)
        ending.end("alone")
        return True

    pending: asyncio.Future[tuple[ha_mode.Seen, bool]] | None = None  # a look still running: never two at once
    try:
        while True:
            await asyncio.sleep(WAIT_EVERY)
            pending = pending or _off_the_loop(look)
            seen, streamed, why = ha_mode.Seen(), False, ""  # silent, unless the look says otherwise
            await asyncio.wait([pending], timeout=WAIT_LOOK)
            if not pending.done():
                why = f"a look at the peer and this box's cluster still runs after {WAIT_LOOK:.0f} s"
            elif pending.exception() is not None:  # our own database or the peer: silent this time
                why = repr(pending.exception())[:300]
            else:
                seen, streamed = pending.result()
            if pending.done():
                pending = None
            if why and why != failing:
                log.event("ha_peer_unknown", error=why)
            failing = why
            if await decided(seen, streamed):
                return
    finally:
        if pending is not None:
            pending.cancel()  # its thread ends by its own timeouts, waited for by nobody


def _witness_unknown(words: str) -> tuple[str, str]:
    return (
        f"this box waits after a cold start and takes no mail: its peer is silent, and the witness cannot be asked "
        f"({words}), so this box cannot tell whether another one serves as the primary. It asks again every "
        f"{WAIT_RETRY:.0f} s; check the witness and the way to it (the router).",
        f"このサーバーはコールドスタート後に待機中で、メールを受け付けていません。相手は応答せず、証人にも問い合わせ"
        f"られません({words})。別のサーバーがプライマリとして動いているか分かりません。{WAIT_RETRY:.0f} 秒ごとに"
        "再試行します。証人とそこまでの経路(ルーター)を確認してください。",
    )


def _address_held(config: Config) -> tuple[str, str]:
    address = config.settings.ha.address
    return (
        f"this box waits after a cold start and takes no mail: its peer is silent, but another machine answers for "
        f"the floating address {address}, so another box may be serving as the primary. It takes nothing while the "
        "address is held elsewhere; check the other box.",
        f"このサーバーはコールドスタート後に待機中で、メールを受け付けていません。相手は応答しませんが、"
        f"フローティングアドレス {address} に別のマシンが応答しているため、別のサーバーがプライマリとして動いている"
        "可能性があります。アドレスが他で使われている間は何も引き受けません。もう一台を確認してください。",
    )


def _seen_again(why: str) -> tuple[str, str]:
    ja = "スタンバイがこのサーバーからストリーミングしています" if why.startswith("a standby") else "相手が応答しました"
    return (
        f"this box waiting after a cold start sees the other box of the pair again ({why}): it decides its part "
        "with it now.",
        f"コールドスタート後に待機していたこのサーバーは、ペアのもう一台を確認できました({ja})。役割を決め直します。",
    )


def _refusing_waiting(why: str) -> tuple[str, str]:
    return (
        f"this box waits after a cold start and takes no mail: its peer answers but refuses it ({why}), so the "
        "other box may be serving as the primary. It waits as long as the peer refuses; check the two boxes' clocks "
        "and that both hold the same replication secret.",
        f"このサーバーはコールドスタート後に待機中で、メールを受け付けていません。相手は応答しますが要求を拒否して"
        f"います({why})。もう一台がプライマリとして動いている可能性があります。拒否が続く間は待ち続けます。"
        "両方の時計と、同じレプリケーション秘密を持っているかを確認してください。",
    )


def _witness_answers(words: str) -> tuple[str, str]:
    return (
        f"this box waits after a cold start and takes no mail: its peer is silent, but {words}, so another box may "
        "be serving as the primary. It takes nothing until it sees its peer or the witness no longer sees the pair's "
        "services; check the other box.",
        f"このサーバーはコールドスタート後に待機中で、メールを受け付けていません。相手は応答しませんが、証人の結果"
        f"({words})から、別のサーバーがプライマリとして動いている可能性があります。相手が見えるか、証人がペアの"
        "サービスを見なくなるまで何も引き受けません。もう一台を確認してください。",
    )


def _alone(hostname: str, waited: float, words: str) -> tuple[str, str]:
    return (
        f"{hostname} took the primary's part alone after {waited:.0f} s: its peer stayed silent since its cold start, "
        f"and {words}. If the other box was promoted while this one was off, check it before it serves too.",
        f"{hostname} はコールドスタート後 {waited:.0f} 秒待ち、単独でプライマリになりました。相手は応答せず、"
        f"証人の結果は「{words}」でした。停止中にもう一台が昇格していた場合は、そちらを確認してください。",
    )


async def _alert(monitor: Monitor | None, sentence: str, ja: str, state: State = State.CRITICAL) -> None:
    """An "ha" alert (critical, a warning, or OK: the last one is over), when the health monitor runs; one that cannot
    be sent is logged, never ends the services it is about."""
    if monitor is None:
        return
    try:
        await monitor.announce("ha", state, sentence, ja)
    except Exception as error:  # noqa: BLE001 - the store or a delivery failing: the log has the event already
        log.event("ha_alert_failed", error=f"{type(error).__name__}: {error}"[:300])


def _ha_alert(monitor: Monitor | None) -> Callable[[str, str, bool], Awaitable[None]]:
    """An "ha" alert as jitaku.ha.auto and jitaku.ha.sync raise it: (sentence, ja, over), critical until over."""

    async def alert(sentence: str, ja: str, over: bool) -> None:
        await _alert(monitor, sentence, ja, State.OK if over else State.CRITICAL)

    return alert


def _answering(was: str | None) -> tuple[str, str]:
    return (
        f"this primary's peer answers it again as a peer should (it refused it before: {was}).",
        f"このプライマリの相手は再び正しく応答しています(以前の拒否: {was})。",
    )


def _refusing(why: str) -> tuple[str, str]:
    return (
        f"this primary's peer answers but refuses it: {why}. This box cannot tell whether the other one was "
        "promoted meanwhile; check the two boxes' clocks and that both hold the same replication secret.",
        f"このプライマリの相手は応答しますが、要求を拒否しています: {why}。もう一台が昇格したかどうか分かりません。"
        "両方の時計と、同じレプリケーション秘密を持っているかを確認してください。",
    )


async def _rejoin(config: Config, ending: _Ending, monitor: Monitor | None) -> None:
    """A fenced box asked to re-join by a switchover (jitaku.ha.rejoin) does it while it serves fenced, and its
    services end with outcome "rejoined" once its cluster is a standby; one that cannot stays fenced, and says why:
    in the log, in an alert (MONITOR), and to /api/ha/state (rejoin.failure)."""
    import threading

    from jitaku.ha import fence, rejoin

    if not rejoin.wanted(fence.read(config)):
        return
    stopping = threading.Event()  # the thread's wait for the new primary ends with the daemon's services
    try:
        if await asyncio.to_thread(rejoin.rejoin, config, stopping):
            ending.end("rejoined")
    except Exception as error:
        why = str(error) or repr(error)
        log.event("ha_rejoin_failed", error=why)
        await _alert(
            monitor,
            f"this box could not re-join the new primary as its standby: {why}. It stays fenced.",
            f"新しいプライマリのスタンバイとして再参加できませんでした: {why}。フェンスされたままです。",
        )
    finally:
        stopping.set()
