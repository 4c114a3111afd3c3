"""passwords: an unknown user costs an argon2 check, and the checks' own pool refuses what would wait too long."""

from __future__ import annotations

import asyncio
import logging
import time
from unittest import mock

import pytest

from jitaku import passwords
from jitaku.passwords import NOBODY, Busy, Checker, hash_password, verify_password


def test_nobodys_hash_has_the_parameters_of_every_other() -> None:
    assert not passwords._hasher.check_needs_rehash(NOBODY)


def test_no_user_is_checked_against_nobodys_hash_and_never_succeeds() -> None:
    with mock.patch.object(passwords, "_hasher", mock.Mock(wraps=passwords._hasher)) as hasher:
        assert verify_password(None, "anything") is False
        assert verify_password("", "anything") is False
        assert [call.args[0] for call in hasher.verify.call_args_list] == [NOBODY, NOBODY]
        hasher.verify = mock.Mock(return_value=True)
        assert verify_password(None, "the password nobody knows") is False
    good = hash_password("secret")
    assert verify_password(good, "secret") and not verify_password(good, "wrong")


def test_the_pool_refuses_beyond_its_places_and_takes_them_back_when_checks_end() -> None:
    checker = Checker(threads=1, queue=2)
    started = []

    def slow(_hash: str | None, _password: str) -> bool:
        started.append(time.monotonic())
        time.sleep(0.2)
        return False

    async def go() -> None:
        with mock.patch.object(passwords, "verify_password", slow):
            for _ in range(3):
                checker.reserve()
            with pytest.raises(Busy):
                checker.reserve()
            checks = [asyncio.ensure_future(checker.verify(None, "x")) for _ in range(3)]
            await asyncio.sleep(0.05)
            checks[2].cancel()  # its client left while it waited: the place comes back at once
            await asyncio.sleep(0.05)
            checker.reserve()
            checker.release()
            checks[0].cancel()  # its client left while it was checked: the place comes back when it ends
            await asyncio.sleep(0.05)
            checker.reserve()
            with pytest.raises(Busy):
                checker.reserve()
            checker.release()
            await asyncio.gather(*checks, return_exceptions=True)
            await asyncio.sleep(0.3)
            for _ in range(3):
                checker.reserve()

    asyncio.run(go())
    assert len(started) == 2  # the cancelled one that waited was never checked
    checker.close()


def test_refused_tries_are_logged_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    checker = Checker(threads=1, queue=0)
    checker.reserve()
    with caplog.at_level(logging.INFO, logger="jitaku"):
        for _ in range(100):
            with pytest.raises(Busy):
                checker.reserve()
    lines = [record.getMessage() for record in caplog.records if "login_busy" in record.getMessage()]
    assert len(lines) == 1 and "places=1" in lines[0]
    checker.release()
    checker.close()
