"""The daemon's processes: bind every listener, drop root, fork the SMTP workers, watch them, stop on SIGTERM.

What each process runs is wired in services.py. Its services end without SIGTERM when the box's part in the pair
changes (a standby promoted, a primary fenced, a fenced box re-joined): the workers are stopped, the mode decided
again (jitaku.ha.mode), the workers forked again, and every process serves in the new mode, on the same sockets,
in the same main process.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import ipaddress
import os
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from jitaku import config as config_module
from jitaku import event_loop, heap, log, ports, privileges, provision, serve_lock, services, workers
from jitaku.config import Config, Listen
from jitaku.connections import raise_open_files_limit
from jitaku.errors import ServeError
from jitaku.ha import mode as ha_mode
from jitaku.ha import secret_files
from jitaku.mail.smtp_server import Listener

PR_SET_PDEATHSIG = 1  # linux/prctl.h
IPV6_ANY = ipaddress.IPv6Address("::")
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


@dataclass(frozen=True)
class Sockets:
    """Every listener of the config, bound and listening."""

    smtp: list[services.Bound]  # MX and submission: `[smtp] workers` processes accept on them
    access: list[services.Bound]  # IMAP (`[imap] workers` processes) and POP3 (the main process alone)
    web: list[tuple[Listen, socket.socket]]  # each with the address it got


def serve(data_dir: Path) -> None:
    """`jitaku serve`: DATA_DIR's daemon until SIGTERM. The command line calls it without loading typer."""
    heap.few_arenas()
    config = config_module.load(data_dir)
    user = privileges.run_user(config)  # refused before anything is touched when it cannot be done
    changes = provision.tighten(config)  # first: the lock file is made in a directory nobody else may write to
    log.setup()
    # Bound as root (ports below 1024), then root is dropped for good, before anything is written in the
    # data directory and before the SMTP workers fork: nothing there is root's, no process stays root.
    with serve_lock.held(config.data_dir, owner=user), listening(config) as sockets:
        if user is not None:
            privileges.drop(user)
            log.event("dropped_root", user=user.pw_name, uid=user.pw_uid, gid=user.pw_gid)
        with _managed_cluster(config):
            for change in changes:
                log.event("data_dir_mode", change=change)
            run(config, sockets)


def _managed_cluster(config: Config) -> contextlib.AbstractContextManager[None]:
    """With `[database] managed`, the cluster running until the daemon stops (started, or adopted from a daemon
    killed with -9), and stopped then unless a CLI command still uses it. Started as `[run] user`, once root is
    dropped; a daemon that keeps root runs it as `postgres` (jitaku.ha.cluster)."""
    if not config.settings.database.managed:
        return contextlib.nullcontext()
    from jitaku.ha import cluster

    return cluster.using(config)


@contextlib.contextmanager
def listening(config: Config) -> Iterator[Sockets]:
    """Bind every listener, and close them all when the block ends.

    Before root is dropped (ports below 1024 need it; see jitaku.privileges) and before any worker forks
    (all of them accept on the same sockets). A listener that cannot be bound is a ServeError naming it,
    with none of the others left open.
    """
    ports.forget(config.data_dir)  # an earlier run's, until this one's are bound
    with contextlib.ExitStack() as opened:
        smtp = _bind(services.smtp_listeners(config), opened)
        access = _bind(services.access_listeners(config), opened)
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
    """Fork the worker processes, and serve until SIGTERM; again, in the new mode, each time the services end
    because the box's part in the pair changed.

    Python runs one core's worth of SMTP or IMAP per process; `[smtp] workers` and `[imap] workers` count
    the processes (this one included) that accept on those listeners, in parallel (the kernel spreads
    connections among them), while the queue, the lists, POP3 and the web run in this process alone. IMAP
    sessions in different processes see each other's changes as any two sessions do: through the store.
    """
    heap.unmap_large_blocks()
    raise_open_files_limit()
    listening = _listening(sockets)
    config = ports.listening_on(config, listening)
    # between two runs of the services no event loop handles SIGTERM: it is remembered, and ends the daemon then
    terminated = _Terminated()
    try:
        ports.record(config.data_dir, listening)
        outcome: services.Outcome | None = None
        while not terminated:
            # only a cold start waits for the peer, again after its wait saw it, never after it took the part alone
            mode = ha_mode.decide(config, starting=outcome in (None, "decided"), alone=outcome == "alone")
            if terminated:  # SIGTERM while deciding (up to PEER_TIMEOUT and more): no services start
                return
            # the pair's secret files as the table has them, before a missing key is made here and before the
            # workers that load the keys fork (jitaku.ha.secret_files)
            secret_files.settle(config, standby=mode != ha_mode.PRIMARY)
            provision.complete(config)
            children = _fork_workers(config, sockets, mode)
            try:
                if terminated:
                    return
                outcome = event_loop.run(
                    services.serve(
                        config,
                        mode,
                        sockets.smtp,
                        children,
                        [sock for _address, sock in sockets.web],
                        sockets.access,
                        after=outcome,
                        terminated=terminated.__bool__,
                    )
                )
            finally:
                terminated.handle()  # the event loop gave SIGTERM back to the default action
                workers.terminate(children)
                for pid in children:
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(pid, 0)
            if outcome == "stopped" or terminated:  # SIGTERM has priority over any other outcome
                return
            log.event("serving_again", outcome=outcome, pid=os.getpid())
    finally:
        terminated.restore()
        ports.forget(config.data_dir)


class _Terminated:
    """Whether SIGTERM (or SIGINT) came while no event loop was there to stop the services: while the mode is
    decided, the workers forked, or the services start (before their own handler is installed)."""

    def __init__(self) -> None:
        self._came = False
        self._before = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
        self.handle()

    def restore(self) -> None:
        for signum, handler in self._before.items():
            signal.signal(signum, handler)

    def handle(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._note)

    def _note(self, _signum: int, _frame: object) -> None:
        self._came = True

    def __bool__(self) -> bool:
        return self._came


def _fork_workers(config: Config, sockets: Sockets, mode: ha_mode.Mode) -> list[int]:
    children: list[int] = []
    parent = os.getpid()
    imap = [item for item in sockets.access if item.listener in services.IMAP_LISTENERS]
    for number in range(_worker_count(config)):
        smtp_here = sockets.smtp if number < config.settings.smtp.workers - 1 else []
        imap_here = imap if number < config.settings.imap.workers - 1 else []
        # SIGTERM blocked across the fork: one that came between the fork and the child's own handlers would run
        # the main process's handler in the child, and the main process would never hear of it
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                os._exit(_worker(config, mode, smtp_here, imap_here, parent))
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # in the main process: one that came runs now
        children.append(pid)
    return children


def _worker_count(config: Config) -> int:
    """The processes forked beside the main one."""
    return max(config.settings.smtp.workers, config.settings.imap.workers) - 1


def _worker(
    config: Config, mode: ha_mode.Mode, smtp: list[services.Bound], imap: list[services.Bound], parent: int
) -> int:
    for signum in (signal.SIGTERM, signal.SIGINT):  # not the main process's _Terminated: SIGTERM ends a worker
        signal.signal(signum, signal.SIG_DFL if signum == signal.SIGTERM else signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # blocked by the fork (_fork_workers)
    # Die with the main process, even by kill -9, rather than accept mail nobody will deliver.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        return 1
    try:
        event_loop.run(services.serve(config, mode, smtp, children=None, access=imap))
        return 0
    except BaseException as error:  # noqa: BLE001 - a worker reports and exits; the main process notices
        log.event("worker_failed", pid=os.getpid(), error=repr(error))
        return 1


def _bind(listeners: list[tuple[Listener, tuple[Listen, ...]]], opened: contextlib.ExitStack) -> list[services.Bound]:
    bound: list[services.Bound] = []
    for listener, addresses in listeners:
        for address in addresses:
            sock = _socket(address, listener.name)
            if sock is not None:
                bound.append(services.Bound(listener, _bound_address(address, opened.enter_context(sock)), sock))
    return bound


def _listening(sockets: Sockets) -> ports.Listening:
    """Every listener's addresses as bound, by listener name."""
    listening: ports.Listening = {name: () for name in ports.SECTIONS}
    for item in sockets.smtp + sockets.access:
        listening[item.listener.name] += (item.address,)
    listening["web"] = tuple(address for address, _sock in sockets.web)
    return listening
