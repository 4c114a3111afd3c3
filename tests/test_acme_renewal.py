"""The daemon's renewals (jitaku.acme.renewal) against a stand-in CA: issue.obtain, due and due_at replaced by a
certificate that lives in the test, with the attempts recorded in state.json as obtain records them."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from pathlib import Path

import pytest

from jitaku import event_loop
from jitaku.acme import issue, renewal, state
from jitaku.config import CertsCheckSettings, Config, parse
from jitaku.health import certs
from jitaku.health.result import State
from tests.peers import wait_until
from tests.test_health_listeners import certificate

NOW = 1_800_000_000.0
DAY = 86400.0


class StandIn:
    """A CA that answers or fails, and the certificate it gave: due RENEW_DAYS before its end, or at once when
    there is none."""

    RENEW_DAYS = 30

    def __init__(self, config: Config) -> None:
        self.config = config
        self.not_after: float | None = None
        self.failing: BaseException | None = None
        self.asked: list[float] = []

    def obtain(self, config: Config, now: float, stop: threading.Event | None = None) -> issue.Issued:
        self.asked.append(now)
        attempts = state.read(config.data_dir)
        if isinstance(self.failing, issue.AcmeError):
            state.write(config.data_dir, attempts.failed(now, str(self.failing)))
        if self.failing is not None:
            raise self.failing
        state.write(config.data_dir, attempts.succeeded(now))
        self.not_after = now + 90 * DAY
        return issue.Issued(("mail.example.test",), self.not_after)

    def due_at(self, config: Config) -> float | None:
        return None if self.not_after is None else self.not_after - self.RENEW_DAYS * DAY

    def due(self, config: Config, now: float) -> str | None:
        if self.not_after is None:
            return "no certificate from ACME yet"
        return "it expires soon" if now >= self.not_after - self.RENEW_DAYS * DAY else None


@pytest.fixture
def ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StandIn:
    text = 'hostname = "mail.example.test"\ndomains = ["example.test"]\n[acme]\nemail = "me@example.test"\n'
    stand_in = StandIn(Config(parse(text, tmp_path / "jitaku.toml"), tmp_path))
    monkeypatch.setattr(issue, "obtain", stand_in.obtain)
    monkeypatch.setattr(issue, "due", stand_in.due)
    monkeypatch.setattr(issue, "due_at", stand_in.due_at)
    monkeypatch.setattr(issue, "certificate", lambda config: None)  # the stand-in's is no file
    return stand_in


def test_a_failure_waits_for_its_next_try(ca: StandIn) -> None:
    ca.failing = issue.AcmeError("the CA answered 500.")
    asyncio.run(renewal.renew_if_due(ca.config, NOW))
    next_try = state.read(ca.config.data_dir).next_try
    assert next_try == NOW + state.FIRST_RETRY
    assert renewal.next_look(ca.config, NOW + 1) == state.FIRST_RETRY - 1  # it sleeps until then
    asyncio.run(renewal.renew_if_due(ca.config, next_try - 1))
    assert ca.asked == [NOW]  # not before
    ca.failing = None
    asyncio.run(renewal.renew_if_due(ca.config, next_try))
    assert ca.asked == [NOW, next_try]
    assert state.read(ca.config.data_dir).failures == 0


def test_a_due_certificate_is_renewed_and_the_next_look_is_when_it_is_due_again(
    ca: StandIn, caplog: pytest.LogCaptureFixture
) -> None:
    ca.not_after = NOW + 10 * DAY
    assert renewal.next_look(ca.config, NOW - 21 * DAY) == renewal.LOOK  # due in a day: looks every LOOK meanwhile
    assert renewal.next_look(ca.config, NOW - 20 * DAY - 100) == 100  # due in 100 s: wakes then
    with caplog.at_level(logging.INFO, logger="jitaku"):
        asyncio.run(renewal.renew_if_due(ca.config, NOW))
    assert ca.asked == [NOW] and ca.not_after == NOW + 90 * DAY
    [line] = [r.getMessage() for r in caplog.records if "acme_renewed" in r.getMessage()]
    assert "mail.example.test" in line
    ca.RENEW_DAYS = 90  # a certificate due again at once (the CA left a name out): not asked again at once
    assert renewal.next_look(ca.config, NOW + 1) == state.FIRST_RETRY


def test_a_certificate_renewed_meanwhile_is_not_renewed_again(ca: StandIn) -> None:
    """`jitaku cert renew` (or a person) renewed it: due() reads the file, so the daemon's round does nothing."""
    ca.not_after = NOW + 10 * DAY
    ca.obtain(ca.config, NOW - 1)  # the command's
    asyncio.run(renewal.renew_if_due(ca.config, NOW))
    assert ca.asked == [NOW - 1]


def test_an_error_not_from_the_ca_is_a_failed_renewal_with_its_backoff(
    ca: StandIn, caplog: pytest.LogCaptureFixture
) -> None:
    """The certs check tells a person of it, as of the CA's refusals: not only a line in the log."""
    ca.failing = OSError("Could not find a suitable TLS CA certificate bundle")
    with caplog.at_level(logging.INFO, logger="jitaku"):
        asyncio.run(renewal.renew_if_due(ca.config, NOW))
    attempts = state.read(ca.config.data_dir)
    assert (attempts.failures, attempts.next_try) == (1, NOW + state.FIRST_RETRY)
    assert attempts.last_error == "unexpected error: Could not find a suitable TLS CA certificate bundle"
    assert "event=acme_failed" in caplog.text and "Traceback" not in caplog.text


def test_the_daemon_task_looks_soon_after_the_start_and_never_ends_on_an_error(
    ca: StandIn, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """keep_renewed shares the daemon's task group: an error escaping it would stop every service."""
    looks: list[float] = []

    def broken(config: Config, now: float) -> str | None:
        looks.append(now)
        raise RuntimeError("unexpected")

    monkeypatch.setattr(issue, "due", broken)
    monkeypatch.setattr(renewal, "FIRST_LOOK", 0.01)
    monkeypatch.setattr(state, "FIRST_RETRY", 0.01)

    async def watch() -> None:
        task = asyncio.create_task(renewal.keep_renewed(ca.config))
        while len(looks) < 3 and not task.done():
            await asyncio.sleep(0.01)
        assert not task.done()
        task.cancel()

    with caplog.at_level(logging.INFO, logger="jitaku"):
        asyncio.run(asyncio.wait_for(watch(), timeout=30))
    assert "event=acme_error" in caplog.text and "unexpected" in caplog.text
    attempts = state.read(ca.config.data_dir)  # not the log alone: the certs check alerts on it
    assert attempts.failures >= 3 and attempts.last_error == "unexpected error: unexpected"
    unnamed = certificate(
        ca.config.data_dir / "cert.pem", time.time() + 60 * DAY, issuer="Pebble Intermediate CA"
    )  # lacks mta-sts: due
    renewals = certs.Renewals(ca.config.settings.acme_names, attempts)
    alert = certs.check(CertsCheckSettings(), unnamed, time.time(), renewals=renewals)
    assert alert is not None and alert.state == State.WARNING
    assert "its renewal failed: unexpected error: unexpected; the next try is at" in alert.sentence


def test_a_name_the_ca_left_out_orders_nothing_again_before_the_certificate_is_due(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default names hold mta-sts.DOMAIN, which many have no DNS for: ordered again at each look, the CA's limit
    on duplicate certificates (5 a week at Let's Encrypt) would be spent in a day. issue.due as it is, on a file."""
    text = (
        'hostname = "mail.example.test"\ndomains = ["example.test"]\n[acme]\nemail = "me@example.test"\n'
        'names = ["mail.example.test", "mta-sts.example.test"]\n'
    )
    config = Config(parse(text, tmp_path / "jitaku.toml"), tmp_path)
    (tmp_path / "tls").mkdir()
    now = time.time()
    certificate(tmp_path / "tls" / "cert.pem", now + 80 * DAY, issuer="Pebble Intermediate CA")  # no mta-sts name
    left_out = (
        "mta-sts.example.test",
        "the CA could not fetch http://mta-sts.example.test/.well-known/acme-challenge/",
    )
    state.write(tmp_path, state.Attempts().succeeded(now - 60, [left_out]))
    asked: list[float] = []

    def obtain(config: Config, now: float, stop: threading.Event | None = None) -> issue.Issued:
        asked.append(now)
        return issue.Issued(config.settings.acme_names, now + 90 * DAY)

    monkeypatch.setattr(issue, "obtain", obtain)
    assert issue.due(config, now) == "the certificate does not name mta-sts.example.test"
    asyncio.run(renewal.renew_if_due(config, now))
    assert asked == []
    assert renewal.next_look(config, now) == renewal.LOOK  # due by its end in 50 days
    state.write(tmp_path, state.Attempts().succeeded(now - 60))  # a name added to the config since: ordered
    asyncio.run(renewal.renew_if_due(config, now))
    assert asked == [now]


def test_a_failure_recorded_by_the_command_is_tried_again_when_the_alert_says(tmp_path: Path) -> None:
    """`jitaku cert renew` failed while the daemon slept: its next try, which the alert and the command name, is
    when the daemon orders, even for a name the CA left out before (a failed order spends no duplicate limit)."""
    text = (
        'hostname = "mail.example.test"\ndomains = ["example.test"]\n[acme]\nemail = "me@example.test"\n'
        'names = ["mail.example.test", "mta-sts.example.test"]\n'
    )
    config = Config(parse(text, tmp_path / "jitaku.toml"), tmp_path)
    (tmp_path / "tls").mkdir()
    now = time.time()
    certificate(tmp_path / "tls" / "cert.pem", now + 80 * DAY, issuer="Pebble Intermediate CA")  # no mta-sts name
    state.write(tmp_path, state.Attempts().succeeded(now - 60, [("mta-sts.example.test", "no DNS record")]))
    slept = renewal.next_look(config, now)
    assert slept <= state.FIRST_RETRY  # awake by the soonest next try a failure can set
    state.write(tmp_path, state.read(tmp_path).failed(now + 1, "cannot reach the ACME directory"))  # the command's
    assert renewal.next_look(config, now + slept) == now + 1 + state.FIRST_RETRY - (now + slept)
    asked: list[float] = []

    def obtain(config: Config, now: float, stop: threading.Event | None = None) -> issue.Issued:
        asked.append(now)
        return issue.Issued(config.settings.acme_names, now + 90 * DAY)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(issue, "obtain", obtain)
        asyncio.run(renewal.renew_if_due(config, now + 1 + state.FIRST_RETRY))
    assert asked == [now + 1 + state.FIRST_RETRY]


def test_left_out_names_are_kept_as_a_list_and_the_old_sentence_still_read(tmp_path: Path) -> None:
    """A reason may hold "; " and ": " (the CA's own words): read back, it must not become a name."""
    reasons = [("mta-sts.example.test", "the CA said: no; really: none"), ("www.example.test", "404")]
    state.write(tmp_path, state.Attempts().succeeded(NOW, reasons))
    assert json.loads(state.path(tmp_path).read_text())["left_out"] == [list(pair) for pair in reasons]
    assert state.read(tmp_path).left_out == tuple(reasons)
    old = {"last_try": NOW, "last_success": NOW, "left_out": "; ".join(f"{name}: {why}" for name, why in reasons)}
    state.path(tmp_path).write_text(json.dumps(old))  # as a version before this one wrote it
    assert state.read(tmp_path) == state.Attempts(NOW, NOW, left_out=tuple(reasons))
    assert state.read(tmp_path).left_out_text() == old["left_out"]


def test_the_backoff_stays_twice_a_day_however_long_it_fails() -> None:
    """A lapsed domain fails twice a day for years: past 1024 failures 2 ** n overflowed a float."""
    assert state.Attempts(failures=2000).failed(0.0, "x").next_try == state.LAST_RETRY
    assert state.Attempts(failures=3).failed(0.0, "x").next_try == 8 * state.FIRST_RETRY


def test_a_fence_or_a_stop_calls_off_an_order_in_flight_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The CA may take minutes to validate (issue.DEADLINE): the daemon's stop must not wait for it, and the order,
    when it ends, installs nothing on a box told to stop (a fenced one) and records no failure to alert on."""
    text = 'hostname = "mail.example.test"\ndomains = ["example.test"]\n[acme]\nemail = "me@example.test"\n'
    config = Config(parse(text, tmp_path / "jitaku.toml"), tmp_path)
    validating, answered = threading.Event(), threading.Event()

    def validated(config: Config, acme: object, csr: bytes, ends: float) -> object:
        validating.set()
        answered.wait(30)  # the CA polling on
        return object()

    monkeypatch.setattr(issue.account, "client_for", lambda config: object())
    monkeypatch.setattr(issue, "_validated", validated)
    monkeypatch.setattr(renewal, "FIRST_LOOK", 0.01)

    async def fenced() -> None:
        task = asyncio.create_task(renewal.keep_renewed(config))
        await asyncio.wait_for(asyncio.to_thread(validating.wait), 30)  # the order is under way
        task.cancel()

    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="jitaku"):
        event_loop.run(fenced())
        took = time.monotonic() - started
        answered.set()
        wait_until(lambda: not [t for t in threading.enumerate() if t.name == "acme-obtain"], timeout=30)
    assert took < 10  # the order's thread is not waited for
    assert "event=acme_stopped" in caplog.text and "event=acme_failed" not in caplog.text
    assert state.read(tmp_path).failures == 0
    assert not (tmp_path / "tls" / "cert.pem").exists()
