"""The health monitor inside `jitaku serve`: a degraded array and a disk reallocating sectors (fixtures
behind /proc/mdstat's path and a fake smartctl) reach a local webhook through apprise's json:// target
within two check intervals, in one sentence, and the recovery notice follows the fix."""

from __future__ import annotations

import json
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from jitaku import store
from jitaku.health.result import Result, State
from jitaku.store import Database
from tests.integration.harness import Jitaku
from tests.peers import free_port, swaks, wait_until
from tests.test_health_listeners import certificate

FIXTURES = Path(__file__).parent.parent / "fixtures"
FAKE_SMARTCTL = FIXTURES / "smartctl" / "fake_smartctl.py"
INTERVAL = 1.0


class Hook:
    """A webhook receiver: what apprise's json:// target posts, with when it came."""

    def __init__(self, stand_in: Any) -> None:
        self.received: list[tuple[float, dict[str, Any]]] = []
        self.refuse = 0  # how many of the next posts to answer with 503
        self._lock = threading.Lock()
        self.server = stand_in(self._receive)
        self.url = "json://" + self.server.url.removeprefix("http://") + "/hook"

    def _receive(self, method: str, path: str, query: Any, headers: Any, body: bytes) -> tuple[int, str]:
        with self._lock:
            if self.refuse:
                self.refuse -= 1
                return 503, "busy"
            self.received.append((time.monotonic(), json.loads(body) if body else {}))
        return 200, "ok"

    def titles(self) -> list[str]:
        return [message.get("title", "") for _at, message in self.received]

    def first(self, words: str, after: float = 0.0) -> tuple[float, dict[str, Any]] | None:
        """The first alert since AFTER whose title or text has WORDS."""
        return next(
            ((at, m) for at, m in self.received if at >= after and words in m.get("title", "") + m.get("message", "")),
            None,
        )


class Machine:
    """What the monitor looks at: an mdstat file and the disks behind a fake smartctl and lsblk."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.mdstat = directory / "mdstat"
        self.devices = directory / "devices.json"
        self.smartctl = directory / "smartctl"
        self.smartctl.write_text(f'#!/bin/sh\nexec {sys.executable} {FAKE_SMARTCTL} {self.devices} "$@"\n')
        self.smartctl.chmod(0o755)
        self.lsblk = directory / "lsblk"
        self.lsblk.write_text(f"#!/bin/sh\ncat {FIXTURES / 'lsblk.json'}\n")
        self.lsblk.chmod(0o755)
        self.array("healthy_raid1")
        self.disks(sda="healthy", sdb="healthy")

    def array(self, fixture: str) -> None:
        shutil.copy(FIXTURES / "mdstat" / f"{fixture}.txt", self.mdstat.with_suffix(".new"))
        self.mdstat.with_suffix(".new").replace(self.mdstat)

    def disks(self, **devices: str) -> None:
        self.devices.write_text(json.dumps({f"/dev/{name}": fixture for name, fixture in devices.items()}))


@pytest.fixture
def hook(stand_in) -> Hook:
    return Hook(stand_in)


def monitored(
    jitaku_factory: Any,
    machine: Machine,
    hook: Hook,
    dns_port: int | None = None,
    health: dict[str, Any] | None = None,
    before_start: Callable[[Jitaku], None] | None = None,
    **alerts: Any,
) -> Jitaku:
    server: Jitaku = jitaku_factory(dns_port)
    server.settings["health"] = {
        "interval": INTERVAL,
        "raid": {"mdstat": str(machine.mdstat), "lsblk": str(machine.lsblk)},
        "smart": {"smartctl": str(machine.smartctl)},
        **(health or {}),
    }
    if dns_port:  # the probe goes through our MX as DNS tells it, on the port strangers use
        server.settings["delivery"] = {"port": server.fixed_port("mx")}
        server.settings["health"]["mailflow"] = {"to": "probe@example.test", "deadline": 2}
    server.settings["alerts"] = {"urls": [hook.url], **alerts}
    server.write_config()
    server.init("alice@example.test", "probe@example.test")
    if before_start is not None:
        before_start(server)
    server.start()
    return server


def test_a_degraded_array_is_alerted_within_two_intervals_and_its_recovery_follows(
    jitaku_factory, tmp_path, hook
) -> None:
    machine = Machine(tmp_path / "machine")
    server = monitored(jitaku_factory, machine, hook)
    time.sleep(3 * INTERVAL)
    assert hook.received == []  # all is well: no news
    failed_at = time.monotonic()
    machine.array("failed_member")  # sdb3 fails
    at, alert = wait_until(lambda: hook.first("critical: raid"), timeout=10)
    assert at - failed_at <= 2 * INTERVAL + 0.5, f"{at - failed_at:.2f} s"
    assert alert["title"] == "[mail.example.test] critical: raid"
    assert alert["message"] == (
        "md1 is degraded: sdb3 failed (disk WDC WD10EZEX-08WN4A0 serial WD-WCC6Y1KX0002). The array runs on sda alone."
    )
    # Recorded as said once the delivery returned: a stop before that says it again after the restart
    # (at least once, never lost), so the restart waits for the record.
    wait_until(lambda: "event=alert_sent check=raid" in server.log(), timeout=10)
    server.restart()  # the owner knows already: a restart does not say it again
    time.sleep(3 * INTERVAL)
    assert hook.titles() == ["[mail.example.test] critical: raid"]
    rebuilding_at = time.monotonic()
    machine.array("recovering")  # a new disk went in
    at, rebuilding = wait_until(lambda: hook.first("warning: raid", rebuilding_at), timeout=10)
    assert rebuilding["message"].startswith("md1 (raid1) is rebuilding onto sdc3: 27.5% done")
    fixed_at = time.monotonic()
    machine.array("healthy_raid1")
    at, recovered = wait_until(lambda: hook.first("recovered: raid", fixed_at), timeout=10)
    assert at - fixed_at <= 2 * INTERVAL + 0.5
    assert recovered["message"] == "md1 (raid1) is healthy on sda3 sdb3. md0 (raid1) is healthy on sda1 sdb1."
    assert "event=health_changed check=raid state=critical alert=problem" in server.log()


def test_an_mx_that_no_stranger_reaches_any_more_is_noticed_from_the_flat_graph(jitaku_factory, tmp_path, hook) -> None:
    """The night the server was unreachable: at an hour that brought about 12 SMTP sessions on each of the
    days before, none came. One session (swaks, to the MX) is the recovery."""

    def earlier_days(server: Jitaku) -> None:
        database = Database(server.database_url)
        now = time.time()
        with database.transaction() as connection:
            for days, sessions in ((1, 11.0), (2, 12.0), (3, 14.0)):
                usual = Result("traffic", State.OK, "", {"smtp_sessions": sessions, "rx_rate": 0.0})
                store.health.record(connection, usual, now - days * 86400)
        database.close()

    server = monitored(
        jitaku_factory,
        Machine(tmp_path / "machine"),
        hook,
        health={"traffic": {"interface": "lo"}},
        before_start=earlier_days,
    )
    started_at = time.monotonic()
    at, alert = wait_until(lambda: hook.first("warning: traffic"), timeout=10)
    assert at - started_at <= 2 * INTERVAL + 1.5, f"{at - started_at:.2f} s"
    hour = time.strftime("%H:00")
    assert alert["message"] == (
        f"no SMTP session has come in for an hour, where 12 usually do at {hour}: are we still reachable from outside?"
    )
    reached_at = time.monotonic()
    sent = swaks("--server", f"127.0.0.1:{server.smtp_port}", "--to", "alice@example.test", "--from", "a@example.net")
    assert sent.returncode == 0, sent.stdout
    at, recovered = wait_until(lambda: hook.first("recovered: traffic", reached_at), timeout=10)
    assert at - reached_at <= 3 * INTERVAL + 0.5, f"{at - reached_at:.2f} s"  # a tally flush, then a round
    assert "1 SMTP session in the last hour" in recovered["message"]


def test_an_alert_no_target_took_is_sent_again_next_round(jitaku_factory, tmp_path, hook) -> None:
    machine = Machine(tmp_path / "machine")
    server = monitored(jitaku_factory, machine, hook)
    time.sleep(2 * INTERVAL)
    hook.refuse = 2  # the alert channel is down for a moment
    machine.array("failed_member")
    wait_until(lambda: hook.first("critical: raid"), timeout=10)
    assert hook.titles() == ["[mail.example.test] critical: raid"]
    assert server.log().count("event=alert_failed check=raid") == 2


def test_reallocated_sectors_are_news_each_time_they_grow(jitaku_factory, tmp_path, hook) -> None:
    machine = Machine(tmp_path / "machine")
    monitored(jitaku_factory, machine, hook)
    time.sleep(2 * INTERVAL)
    grew_at = time.monotonic()
    machine.disks(sda="healthy", sdb="reallocating")
    at, alert = wait_until(lambda: hook.first("warning: smart"), timeout=15)
    assert at - grew_at <= 2 * INTERVAL + 1.0  # smartctl readings are shared for a round, at most 1 s old here
    assert alert["message"].startswith(
        "sdb (WDC WD10EZEX-08WN4A0 serial WD-WCC6Y1KX0002) is wearing out: 8 reallocated"
    )
    machine.disks(sda="healthy", sdb="failing")
    _at, failing = wait_until(lambda: hook.first("critical: smart"), timeout=15)
    assert "fails its SMART self-assessment" in failing["message"]
    machine.disks(sda="healthy", sdb="healthy")  # replaced
    wait_until(lambda: hook.first("recovered: smart"), timeout=15)


def test_the_heartbeat_pings_while_we_live_and_stops_when_we_die(jitaku_factory, tmp_path, hook, stand_in) -> None:
    pings: list[float] = []
    outside = stand_in(lambda *request: (pings.append(time.monotonic()), (200, "OK"))[1])
    machine = Machine(tmp_path / "machine")
    server = monitored(jitaku_factory, machine, hook, heartbeat_url=outside.url + "/ping/abc", heartbeat_interval=1)
    wait_until(lambda: len(pings) >= 3, timeout=10)
    server.kill9()  # the power cut, as the outside service sees it: silence
    silent_from = len(pings)
    time.sleep(2.5)
    assert len(pings) == silent_from
    assert {path for _m, path, _q, _h in outside.requests} == {"/ping/abc"}


def test_alerts_test_reaches_every_target_and_names_the_one_that_failed(jitaku_factory, hook) -> None:
    server: Jitaku = jitaku_factory()
    dead = f"json://127.0.0.1:{free_port()}/nobody"
    server.settings["alerts"] = {"urls": [hook.url, dead], "language": "ja"}
    server.write_config()
    server.init()
    ran = server.cli("alerts", "test", check=False)
    assert ran.returncode == 1 and ran.stdout.splitlines() == ["sent  #1 json://", "FAILED  #2 json://"]
    assert "127.0.0.1" not in ran.stdout  # a target is named by its place in the list: its URL may hold a secret
    ((_at, message),) = hook.received
    assert message["title"] == "[mail.example.test] テスト通知"
    assert "mail.example.test の jitaku" in message["message"]


def test_a_config_with_an_alert_url_apprise_cannot_use_names_the_line(jitaku_factory) -> None:
    server: Jitaku = jitaku_factory()
    server.settings["alerts"] = {"urls": ["nosuchservice://secret-token@example"]}
    server.write_config()
    ran = server.cli("check", check=False)
    assert ran.returncode == 1
    assert "jitaku.toml:" in ran.stderr and "[alerts] urls: apprise does not understand nosuchservice://" in ran.stderr
    assert "secret-token" not in ran.stderr


def mx(zone: Any, address: str | None) -> None:
    """Point example.test's MX at ADDRESS; None: no MX and no address (a zone that lost its records)."""
    zone.records = [r for r in zone.records if not str(r.rname).endswith("example.test.")]
    zone.add("example.test. 1 IN SOA ns.example.test. hostmaster.example.test. 1 60 60 60 1")
    if address:
        zone.add("example.test. 1 IN MX 10 mx.example.test.")
        zone.add(f"mx.example.test. 1 IN A {address}")


def test_the_mail_flow_probe_names_the_step_that_broke(jitaku_factory, tmp_path, hook, dns_zone, sink_factory) -> None:
    zone, dns_port = dns_zone
    mx(zone, "127.0.0.1")
    server = monitored(jitaku_factory, Machine(tmp_path / "machine"), hook, dns_port)
    checked = server.cli("check", "mailflow", "--json", check=False)
    (result,) = json.loads(checked.stdout)
    assert checked.returncode == 0 and result["sentence"].startswith(
        "a probe to probe@example.test through mx.example.test"
    )
    time.sleep(3 * INTERVAL)
    assert hook.received == []
    # probes are removed once seen: at most the one in flight at this moment is there, never the rounds before it
    assert len(json.loads(server.cli("mailbox", "list", "probe@example.test", "--json").stdout)) <= 1

    broken_at = time.monotonic()
    mx(zone, None)  # the MX record is gone
    at, alert = wait_until(lambda: hook.first("critical: mailflow"), timeout=10)
    assert at - broken_at <= 2 * INTERVAL + 0.5, f"{at - broken_at:.2f} s"
    assert (
        alert["message"]
        == "mail from outside cannot reach probe@example.test: dns: no address for the MX of example.test (example.test)."
    )

    mx(zone, "127.0.0.2")  # an old address, where nothing listens
    _at, alert = wait_until(lambda: hook.first("critical: mailflow", at + 0.01), timeout=10)
    assert alert["message"].startswith(
        "mail from outside cannot reach probe@example.test: connect: cannot connect to mx.example.test[127.0.0.2]"
    )

    sink = sink_factory(host="127.0.0.3", port=server.smtp_port)  # a server that takes mail and loses it
    mx(zone, "127.0.0.3")
    _at, alert = wait_until(lambda: hook.first("took the probe"), timeout=15)
    assert alert["message"] == (
        f"mail from outside cannot reach probe@example.test: delivery: mx.example.test[127.0.0.3]:{server.smtp_port} "
        "over IPv4 took the probe but it did not reach probe@example.test in 2 s."
    )
    assert sink.messages()

    sink_factory("-f", "rcpt", host="127.0.0.4", port=server.smtp_port)  # a server that refuses the probe
    mx(zone, "127.0.0.4")
    _at, alert = wait_until(lambda: hook.first(": smtp: "), timeout=10)
    assert alert["message"].startswith(
        f"mail from outside cannot reach probe@example.test: smtp: mx.example.test[127.0.0.4]:{server.smtp_port} "
        "over IPv4 answered 5"
    )

    mx(zone, "127.0.0.1")
    _at, recovered = wait_until(lambda: hook.first("recovered: mailflow"), timeout=10)
    assert recovered["message"].startswith("a probe to probe@example.test through mx.example.test arrived in ")


def test_the_mail_flow_probe_takes_the_ipv6_path_too(network_namespace, jitaku_factory, hook, dns_zone) -> None:
    """A stranger with IPv6 takes our AAAA record: an MX listening on IPv4 only loses that stranger's mail,
    and the probe says so though mail over IPv4 arrives."""
    zone, dns_port = dns_zone
    network_namespace.ip("addr", "add", "192.0.2.10/24", "dev", "home0")
    network_namespace.ip("addr", "add", "2001:db8::10/64", "dev", "home0", "nodad")
    mx(zone, "192.0.2.10")
    zone.add("mx.example.test. 1 IN AAAA 2001:db8::10")
    server: Jitaku = jitaku_factory(dns_port)
    server.settings["smtp"] = {"listen": ["192.0.2.10:25", "[2001:db8::10]:25"]}
    server.settings["health"] = {"interval": INTERVAL, "mailflow": {"to": "probe@example.test", "deadline": 2}}
    server.settings["alerts"] = {"urls": [hook.url]}
    server.write_config()
    server.init("alice@example.test", "probe@example.test")
    server.start()
    checked = server.cli("check", "mailflow", "--json", check=False)
    (result,) = json.loads(checked.stdout)
    assert checked.returncode == 0, result
    assert re.fullmatch(
        r"a probe to probe@example.test through mx.example.test arrived in [\d.]+ s over IPv4 and [\d.]+ s over IPv6\.",
        result["sentence"],
    )
    server.settings["smtp"] = {"listen": ["192.0.2.10:25"]}  # DNS still publishes the AAAA
    server.write_config()
    server.restart()
    _at, alert = wait_until(lambda: hook.first("critical: mailflow"), timeout=10)
    assert alert["message"] == (
        "mail from outside cannot reach probe@example.test: "
        "connect: cannot connect to mx.example.test[2001:db8::10]:25 over IPv6: Connection refused."
    )
    # probes are removed once seen: at most the one in flight at this moment is there, never the rounds before it
    assert len(json.loads(server.cli("mailbox", "list", "probe@example.test", "--json").stdout)) <= 1


def test_a_renewed_certificate_the_daemon_cannot_load_is_a_warning_until_its_key_comes(
    jitaku_factory, tmp_path: Path
) -> None:
    """The certs check reads what the submission listener serves over STARTTLS, beside tls/cert.pem: a new
    certificate whose key is not there yet stays unloaded, and is served once its key comes, without a restart."""
    server: Jitaku = jitaku_factory()
    server.init("alice@example.test")
    server.start()
    fresh = json.loads(server.cli("check", "certs", "--json").stdout)
    assert fresh == [
        {"check": "certs", "state": "ok", "sentence": fresh[0]["sentence"], "metrics": fresh[0]["metrics"]}
    ]
    ends = time.time() + 200 * 86400
    certificate(server.dir / "tls" / "cert.pem", ends, key_path=tmp_path / "key.pem")  # renewed, its key elsewhere
    wait_until(lambda: "event=tls_reload_failed" in server.log(), timeout=30, interval=0.5)
    # a warning once the listeners had their looks at it (certs.LOADED_WITHIN), not in the seconds they take
    stale = wait_until(lambda: (ran := server.cli("check", "certs", "--json", check=False)).returncode and ran, 30, 1)
    assert stale.returncode == 1
    (result,) = json.loads(stale.stdout)
    until = time.strftime("%Y-%m-%d", time.gmtime(ends))
    assert result["sentence"].endswith(
        f"but it is not {server.dir / 'tls' / 'cert.pem'} (valid until {until}), which jitaku could not load: "
        "tls_reload_failed in its log says why."
    )
    (server.dir / "tls" / "key.pem").write_bytes((tmp_path / "key.pem").read_bytes())
    loaded = f"the certificate for mail.example.test is valid until {until}."
    wait_until(
        lambda: json.loads(server.cli("check", "certs", "--json", check=False).stdout)[0]["sentence"] == loaded,
        timeout=30,
        interval=1,
    )


def lsblk_showing(path: Path, *disks: str) -> str:
    """An lsblk that shows DISKS, each with no model or serial (a virtual machine's, say)."""
    devices = [{"name": name, "pkname": None, "type": "disk", "model": None, "serial": None} for name in disks]
    path.with_suffix(".json").write_text(json.dumps({"blockdevices": devices}))
    path.write_text(f"#!/bin/sh\ncat {path.with_suffix('.json')}\n")
    path.chmod(0o755)
    return str(path)


def test_disk_and_raid_checks_say_when_they_are_not_watching_on_the_cli_and_the_dashboard(
    jitaku_factory, tmp_path
) -> None:
    server: Jitaku = jitaku_factory()
    lsblk = lsblk_showing(tmp_path / "lsblk", "vda", "zram0")
    server.settings["health"] = {
        "interval": INTERVAL,
        "raid": {"mdstat": str(tmp_path / "no-mdstat")},
        "smart": {"smartctl": str(tmp_path / "no-smartctl"), "lsblk": lsblk},
    }
    server.write_config()
    server.init("alice@example.test")
    quiet = server.cli("check", "smart", "raid", "diskage")
    assert " ".join(quiet.stdout.split()).count("not watching:") == 3
    said = {r["check"]: r for r in json.loads(server.cli("check", "smart", "raid", "diskage", "--json").stdout)}
    assert {r["state"] for r in said.values()} == {"ok"} and all(
        r["metrics"] == {"watching": False} for r in said.values()
    )
    assert said["raid"]["sentence"] == f"not watching: no md arrays ({tmp_path / 'no-mdstat'} does not exist)."
    assert said["smart"]["sentence"] == (
        f"not watching: {tmp_path / 'no-smartctl'} is not installed (Debian: apt install smartmontools), "
        "and no disk here keeps SMART."
    )
    lsblk_showing(tmp_path / "lsblk", "sda", "sdb", "zram0")  # real disks, and nothing reads their SMART
    warned = server.cli("check", "smart", "--json", check=False)
    (smart,) = json.loads(warned.stdout)
    assert (warned.returncode, smart["state"], smart["metrics"]) == (1, "warning", {"watching": False})
    assert smart["sentence"].endswith(
        "is not installed (Debian: apt install smartmontools): the SMART of sda, sdb is not watched."
    )
    server.start()

    def dashboard() -> str | None:
        text = httpx.get(f"http://127.0.0.1:{server.web_port}/admin/health").text
        return text if "no md arrays" in text and "<td>smart</td>" in text else None

    page = wait_until(dashboard, timeout=10)
    row = next(line for line in page.splitlines() if "<td>raid</td>" in line)
    assert '<td class="state muted">ok</td>' in row and "not watching: no md arrays" in row
    smart_row = next(line for line in page.splitlines() if "<td>smart</td>" in line)
    assert '<td class="state warning">warning</td>' in smart_row
