"""Password hashing with argon2id; plain passwords never reach the database."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from jitaku import log

# OWASP's argon2id floor (19 MiB, t=2): a login costs a few tens of milliseconds.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)

# The hash of a password nobody knows, made with _hasher's parameters (tests/test_passwords.py checks): a user
# who does not exist, or has no password, is checked against it, so that a login costs the same whether the
# user exists or not (issue 15: 1 ms against 40-80 ms told strangers which users exist).
NOBODY = "$argon2id$v=19$m=19456,t=2,p=1$+Vl1cgj/vkTXcpPvM6sFBQ$WVJhyI+xo8kfFNIFptLux2BaZHcPs2J6HfszC5LrBOs"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether PASSWORD matches; with no hash (no such user) as slowly as with one, and never True."""
    try:
        return _hasher.verify(password_hash or NOBODY, password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


class Busy(Exception):
    """Every thread is checking a password and the queue is full: the try would wait too long."""


class Checker:
    """argon2 on a few threads of its own, with a bounded queue.

    On the default executor, 400 parallel tries held the threads that the MX's SPF and DKIM checks need
    (delivery took 8 s, issue 15). Here a try beyond THREADS + QUEUE is refused at once (Busy), never
    queued without end; a place is given back when its check has finished, even if the client left.
    """

    def __init__(self, threads: int, queue: int) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="jitaku-argon2")
        self._threads = threads
        self._places = threads + queue
        self._taken = 0
        self._lock = threading.Lock()  # places are given back on the pool's threads
        self._log = log.Throttled()

    def reserve(self) -> None:
        """Take a place for one check (`verify` uses it, `release` gives it back unused); Busy if none is left."""
        with self._lock:
            if self._taken < self._places:
                self._taken += 1
                return
        self._log.event("busy", "login_busy", threads=self._threads, places=self._places)
        raise Busy

    def release(self, _done: Future[bool] | None = None) -> None:
        with self._lock:
            self._taken -= 1

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Check PASSWORD on the place `reserve` took, which is given back when the thread is done."""
        try:
            check = self._pool.submit(verify_password, password_hash, password)
        except RuntimeError:  # shut down: the daemon is stopping
            self.release()
            raise
        check.add_done_callback(self.release)
        return await asyncio.wrap_future(check)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
