"""The daemon: open the store, start every listener and the queue in one TaskGroup, stop on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from ssl import SSLContext

from jitaku import log, resolver
from jitaku.config import Config, Listen
from jitaku.mail import dkim, transport
from jitaku.mail.pipeline import Pipeline
from jitaku.mail.policy import Policy
from jitaku.mail.queue import Queue
from jitaku.mail.smtp_server import Handler, Listener, protocol_factory
from jitaku.ratelimit import FailureLimiter
from jitaku.store import Database
from jitaku.tls import server_context

MX = Listener("mx", authenticated=False)
SUBMISSION = Listener("submission", authenticated=True)
SUBMISSIONS = Listener("submissions", authenticated=True, implicit_tls=True)


class ServeError(Exception):
    """The daemon cannot start; the message is one line for a person."""


async def serve(config: Config) -> None:
    settings = config.settings
    resolver.configure(settings.dns.nameservers)
    database = Database(config.database_url)
    try:
        await _run(config, database)
    finally:
        database.close()


async def _run(config: Config, database: Database) -> None:
    settings = config.settings
    hostname = settings.mail_hostname
    keys = [
        key
        for domain in settings.domains
        for key in dkim.load_keys(config.dkim_dir, domain, settings.dkim.selector, settings.dkim.ed25519)
    ]
    policy = Policy(settings, database)
    queue = Queue(
        settings.queue,
        database,
        transport.build(settings.relay, settings.delivery.port, hostname, settings.delivery.timeout),
        policy,
        hostname,
        postmaster=f"MAILER-DAEMON@{settings.domains[0]}",
        concurrency=settings.delivery.concurrency,
    )
    pipeline = Pipeline(hostname, database, dkim.Signer(keys), queue.wake)
    queue.pipeline = pipeline
    limiter = FailureLimiter()
    tls_context = server_context(config.tls_dir) if (config.tls_dir / "cert.pem").exists() else None

    servers: list[asyncio.Server] = []
    loop = asyncio.get_running_loop()
    try:
        for listener, addresses in (
            (MX, settings.smtp.listen),
            (SUBMISSION, settings.submission.listen),
            (SUBMISSIONS, settings.submissions.listen),
        ):
            if listener.implicit_tls and addresses and tls_context is None:
                raise ServeError(f"{listener.name} needs a TLS certificate in {config.tls_dir}; run `jitaku init`")
            handler = Handler(listener, policy, pipeline, database, limiter, settings.smtp.max_recipients)
            factory = protocol_factory(handler, hostname, tls_context, settings.smtp.max_message_size, settings.smtp.timeout)
            for address in addresses:
                servers.append(await _listen(loop, factory, address, listener.name, tls_context if listener.implicit_tls else None))
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        log.event("started", hostname=hostname, data_dir=str(config.data_dir),
                  listeners=",".join(str(s.sockets[0].getsockname()[1]) for s in servers),
                  relay=settings.relay.host if settings.relay else "direct-mx")
        async with asyncio.TaskGroup() as tasks:
            queue_task = tasks.create_task(queue.run())
            await stop.wait()
            queue_task.cancel()
        log.event("stopped", hostname=hostname)
    finally:
        for server in servers:
            server.close()
        for server in servers:
            await server.wait_closed()


async def _listen(
    loop: asyncio.AbstractEventLoop,
    factory: Callable[[], asyncio.BaseProtocol],
    address: Listen,
    name: str,
    ssl: SSLContext | None,
) -> asyncio.Server:
    try:
        return await loop.create_server(factory, address.host, address.port, ssl=ssl, reuse_address=True)
    except OSError as error:
        raise ServeError(f"cannot listen on {address} for {name}: {error.strerror or error}") from None

