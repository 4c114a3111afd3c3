"""The command line as a person uses it: init, serve's refusals, users, DKIM records, mailbox show."""

from __future__ import annotations

import json
import os
import pty
import select
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len

from tests.integration.harness import JITAKU, Jitaku, RawSession
from tests.integration.screen import on_terminal, through_pipe
from tests.integration.test_outbound import direct_mx, dkim_results, submit
from tests.peers import free_port, swaks, wait_until
from tests.test_dns_records import loaded


def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*JITAKU, *args], input=input, capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})}
    )


def test_init_writes_everything_and_prints_the_dns_records(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = run("init", "--dir", str(data), "--domain", "example.test")
    assert result.returncode == 0, result.stderr
    config = (data / "jitaku.toml").read_text()
    assert 'listen = ["127.0.0.1:2525"]' in config and 'listen = ["127.0.0.1:2587"]' in config
    assert 'listen = ["127.0.0.1:8025"]' in config
    assert (data / "jitaku.db").exists()
    key = data / "dkim" / "example.test.jitaku.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert (data / "jitaku.toml").stat().st_mode & 0o777 == 0o600
    assert (data / "tls" / "cert.pem").exists()
    records = result.stdout.partition("Publish these DNS records")[2].partition("\n")[2]
    zone = loaded(records)  # the DKIM key's 410 characters as two strings; the PTR hint a comment
    assert {rdata.to_text() for rdata in zone["example.test", "MX"]} == {"10 mail.example.test."}
    assert {rdata.to_text() for rdata in zone["example.test", "TXT"]} == {'"v=spf1 mx -all"'}
    (dkim_txt,) = zone["jitaku._domainkey.example.test", "TXT"]
    (published,) = json.loads(run("dkim", "show", "--json", "--dir", str(data)).stdout)
    assert b"".join(dkim_txt.strings).decode() == published["value"] and max(map(len, dkim_txt.strings)) == 255
    assert ("_dmarc.example.test", "TXT") in zone
    assert "\tPTR\tmail.example.test.\t; ask your ISP" in records
    assert records == run("dns", "records", "--dir", str(data)).stdout  # one function prints both
    # a second init changes nothing it finds
    before = (data / "jitaku.toml").read_bytes(), key.read_bytes()
    again = run("init", "--dir", str(data), "--domain", "other.test")
    assert again.returncode == 0
    assert ((data / "jitaku.toml").read_bytes(), key.read_bytes()) == before


def test_dns_records_name_our_ca_once_acme_is_on(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run("init", "--dir", str(data), "--domain", "example.test").returncode == 0
    assert "CAA" not in run("dns", "records", "--dir", str(data)).stdout  # ACME is off
    with (data / "jitaku.toml").open("a") as config:
        config.write('\n[acme]\nemail = "owner@example.test"\ndirectory = "letsencrypt"\n')
    shown = run("dns", "records", "--dir", str(data))
    assert shown.returncode == 0, shown.stderr
    caa = [line.split("\t")[0] for line in shown.stdout.splitlines() if '\tCAA\t0 issue "letsencrypt.org"\t' in line]
    assert caa == ["mail.example.test.", "mta-sts.example.test."]  # the certificate's names, not all example.test's
    assert "; mta-sts.example.test.\t300\tIN\tA\t(our public IPv4 address)" in shown.stdout


def test_init_public_and_jitaku_dir_env(tmp_path: Path) -> None:
    data = tmp_path / "public"
    result = run("init", "--domain", "example.test", "--public", env={"JITAKU_DIR": str(data)})
    assert result.returncode == 0, result.stderr
    config = (data / "jitaku.toml").read_text()
    assert '"0.0.0.0:25"' in config and '"0.0.0.0:587"' in config and '"0.0.0.0:465"' in config
    assert '"0.0.0.0:110"' in config and '"0.0.0.0:995"' in config  # POP3 and POP3S
    assert '"0.0.0.0:143"' in config and '"0.0.0.0:993"' in config  # IMAP and IMAPS


def test_init_without_domain_or_config_says_what_is_missing(tmp_path: Path) -> None:
    result = run("init", "--dir", str(tmp_path / "empty"))
    assert result.returncode != 0
    assert "--domain" in result.stderr and "Traceback" not in result.stderr


def test_init_tells_the_owner_to_install_smartctl_when_it_is_missing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run("init", "--dir", str(data), "--domain", "example.test").returncode == 0
    absent = tmp_path / "bin" / "smartctl"
    with (data / "jitaku.toml").open("a") as config:
        config.write(f'\n[health.smart]\nsmartctl = "{absent}"\n')
    told = run("init", "--dir", str(data))
    assert told.returncode == 0, told.stderr
    hint = f"{absent} is not installed, so no disk's SMART is watched (Debian: apt install smartmontools)"
    assert hint in " ".join(told.stdout.partition("Publish these DNS records")[0].split())
    absent.parent.mkdir()
    absent.write_text("#!/bin/sh\n")
    absent.chmod(0o755)
    assert "smartmontools" not in run("init", "--dir", str(data)).stdout


@pytest.mark.parametrize(
    ("args", "said", "usage"),
    [
        (("foo",), "No such command 'foo'.", "Usage: jitaku [OPTIONS] COMMAND [ARGS]..."),
        (("alias", "add", "info@example.test"), "Missing argument 'target'.", "Usage: jitaku alias add [OPTIONS] "),
        (
            ("mailbox", "show", "alice@example.test", "one"),
            "Invalid value for 'uid': Input should be a valid integer",
            "Usage: jitaku mailbox show [OPTIONS] ",
        ),
        (("user", "list", "--colour"), "No such option: --colour", "Usage: jitaku user list [OPTIONS]"),
        (
            ("alias", "remove", "a@example.test", "b@example.test"),
            "Got unexpected extra argument",
            "Usage: jitaku alias",
        ),
    ],
    ids=["unknown-command", "missing-argument", "bad-number", "unknown-option", "extra-argument"],
)
def test_a_usage_mistake_says_what_is_wrong_and_how_the_command_goes_with_exit_2(
    tmp_path: Path, args: tuple[str, ...], said: str, usage: str
) -> None:
    """With typer 0.26+ (its own copy of click) every one of these was 'internal error ... exit 70'."""
    result = run(*args, "--dir", str(tmp_path))
    assert result.returncode == 2, result.stderr
    what, how = result.stderr.splitlines()
    assert what.startswith(f"jitaku: {said}") and how.startswith(usage) and "--help" in how, result.stderr


def test_jitaku_alone_shows_the_commands_with_exit_2() -> None:
    result = run()
    assert result.returncode == 2 and result.stderr == ""
    assert "Usage: jitaku [OPTIONS] COMMAND" in result.stdout and "alias" in result.stdout


def test_ctrl_d_at_the_password_prompt_says_the_input_ended_and_adds_nobody(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run("init", "--dir", str(data), "--domain", "example.test").returncode == 0
    controller, terminal = pty.openpty()
    with os.fdopen(controller, "rb") as owner:
        # a session of its own: getpass then prompts on the pseudo-terminal, never on the one pytest runs in
        process = subprocess.Popen(
            [*JITAKU, "user", "add", "alice@example.test", "--dir", str(data)],
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
            start_new_session=True,
        )
        os.close(terminal)
        seen = b""
        while b"Password: " not in seen:  # only then: getpass flushes what was typed before it asked
            assert select.select([owner], [], [], 60)[0], seen
            seen += _read_or_end(owner)
        os.write(controller, b"\x04")  # Ctrl-D on an empty line: the end of input
        while chunk := _read_or_end(owner):
            seen += chunk
        assert process.wait(timeout=60) == 2
    said = seen.decode().replace("\r\n", "\n")
    assert "jitaku: the input ended (Ctrl-D) before an answer; nothing changed" in said, said
    assert "Traceback" not in said and "internal error" not in said
    assert json.loads(run("user", "list", "--json", "--dir", str(data)).stdout) == []


def test_check_warns_when_the_relay_is_mydns_and_nothing_tells_mydns_our_address(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run("init", "--dir", str(data), "--domain", "example.test").returncode == 0
    quiet = run("check", "relay", "ddns", "--json", "--dir", str(data))
    assert (quiet.returncode, json.loads(quiet.stdout)) == (0, [])  # neither applies
    with (data / "jitaku.toml").open("a") as config:
        config.write('\n[relay]\nhost = "relay.mydns.jp"\nport = 587\n')
    warned = run("check", "relay", "--dir", str(data))
    assert warned.returncode == 1 and "relay" in warned.stdout and "warning" in warned.stdout
    assert "takes mail only from the address MyDNS last heard from" in " ".join(warned.stdout.split())
    (result,) = json.loads(run("check", "relay", "--json", "--dir", str(data)).stdout)
    assert set(result) == {"check", "state", "sentence", "metrics"} and result["state"] == "warning"
    unknown = run("check", "raid", "bogus", "--dir", str(data))
    assert unknown.returncode == 1 and "no such check: bogus" in unknown.stderr


def test_check_without_the_daemon_says_the_listeners_do_not_answer(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run("init", "--dir", str(data), "--domain", "example.test").returncode == 0
    config = data / "jitaku.toml"
    smtp = free_port()  # not the defaults: a jitaku of someone else's may be listening there
    text = config.read_text().replace("127.0.0.1:2525", f"127.0.0.1:{smtp}")
    config.write_text(
        text.replace("127.0.0.1:2587", f"127.0.0.1:{free_port()}").replace("127.0.0.1:8025", f"127.0.0.1:{free_port()}")
    )
    ran = run("check", "--json", "--dir", str(data))
    results = {r["check"]: r for r in json.loads(ran.stdout)}
    assert ran.returncode == 2 and results["services"]["state"] == "critical"
    assert results["services"]["sentence"].startswith(f"not answering: smtp on 127.0.0.1:{smtp}: no connection")
    assert results["queue"]["state"] == "ok" and results["certs"]["state"] == "ok"
    assert results["certs"]["sentence"].startswith("the certificate for mail.example.test is valid until ")


def test_dkim_show_json(server: Jitaku) -> None:
    records = json.loads(server.cli("dkim", "show", "--json").stdout)
    assert {r["name"] for r in records} == {"jitaku._domainkey.example.test", "jitaku._domainkey.example.org"}
    assert all(r["value"].startswith("v=DKIM1; k=rsa; p=MII") for r in records)
    (one,) = json.loads(server.cli("dkim", "show", "example.org", "--json").stdout)
    assert one["name"] == "jitaku._domainkey.example.org"


def test_dkim_show_prints_each_key_whole_at_any_width_and_on_no_terminal(server: Jitaku) -> None:
    (wanted,) = json.loads(server.cli("dkim", "show", "example.org", "--json").stdout)
    command = [*JITAKU, "dkim", "show", "example.org", "--dir", str(server.dir)]
    narrow = {**os.environ, "COLUMNS": "40"}
    piped = subprocess.run(command, capture_output=True, text=True, timeout=60, env=narrow, check=True).stdout
    controller, terminal = pty.openpty()
    with os.fdopen(controller, "rb") as reader:
        subprocess.run(command, stdout=terminal, timeout=60, env=narrow, check=True)
        os.close(terminal)
        seen = b""
        while chunk := _read_or_end(reader):
            seen += chunk
    for text in (piped, seen.decode().replace("\r\n", "\n")):
        assert len(text.splitlines()) == 1, text
        (key,) = loaded(text)["jitaku._domainkey.example.org", "TXT"]
        assert b"".join(key.strings).decode() == wanted["value"]


def test_the_printed_records_load_and_the_dkim_key_in_them_verifies_with_mail_dkim(
    server: Jitaku, dns_zone, sink_factory
) -> None:
    zone, dns_port = dns_zone
    text = server.cli("dns", "records").stdout
    loaded(text)
    zone.add(text)  # served as printed, by dnslib: the key reaches Mail::DKIM through a second parser
    sink = sink_factory()
    direct_mx(server, zone, sink)
    submit(server, "dave@remote.test")
    (stored,) = wait_until(sink.messages)
    verdict = dkim_results(stored, dns_port)
    assert "example.test rsa-sha256 pass" in verdict and "result=pass" in verdict, verdict
    as_json = json.loads(server.cli("dns", "records", "--json").stdout)
    assert [(r["name"], r["type"]) for r in as_json][:3] == [
        ("mail.example.test", "A"),
        ("example.test", "MX"),
        ("example.test", "TXT"),
    ]
    assert set(as_json[0]) == {"name", "type", "value", "note"} and as_json[0]["value"] is None


def test_dns_records_check_says_what_dns_serves_beside_each_record(server: Jitaku, dns_zone) -> None:
    zone, _ = dns_zone
    text = server.cli("dns", "records").stdout
    zone.add("".join(line + "\n" for line in text.splitlines() if "example.org" not in line))
    zone.records = [record for record in zone.records if str(record.rname) != "_dmarc.example.test."]
    zone.add('_dmarc.example.test. 300 IN TXT "v=DMARC1; p=none"')
    checked = server.cli("dns", "records", "--check", check=False)
    assert checked.returncode == 1, checked.stderr
    out = checked.stdout
    assert "example.test.\t3600\tIN\tMX\t10 mail.example.test.\n;   ok: DNS serves this\n" in out
    assert (
        '"v=DMARC1; p=quarantine; rua=mailto:postmaster@example.test"\n;   wrong: DNS serves "v=DMARC1; p=none"\n'
        in out
    )
    assert "example.org.\t3600\tIN\tMX\t10 mail.example.test.\n;   missing: DNS serves no MX for example.org\n" in out
    assert loaded(out).keys() == loaded(text).keys()  # still zone-file text: what DNS serves is in comments
    rows = json.loads(server.cli("dns", "records", "--check", "--json", check=False).stdout)
    states = {(row["name"], row["type"]): (row["state"], row["served"]) for row in rows}
    assert states["_dmarc.example.test", "TXT"] == ("wrong", ["v=DMARC1; p=none"])
    assert states["example.org", "MX"] == ("missing", [])
    assert states["mail.example.test", "A"] == ("unknown", [])  # our address is not known yet: nothing to judge
    assert set(rows[0]) == {"name", "type", "value", "note", "served", "state", "error"}
    zone.records = []
    zone.add(text)  # every record as printed
    assert server.cli("dns", "records", "--check").stdout.count(";   ok: DNS serves this\n") == 8


def test_serve_on_port_zero_writes_the_ports_it_got_to_ports_json(jitaku_factory) -> None:
    """Issue 17 point 11: a test's free port, picked and let go before the daemon bound it, was taken in
    between. Listeners on "host:0" get theirs from the kernel, and the daemon says which in DIR/ports.json,
    written whole (0644) once all are bound and removed when it stops; `jitaku check` looks there too."""
    instance: Jitaku = jitaku_factory()
    instance.settings["imaps"] = {"listen": ["127.0.0.1:0"]}
    instance.write_config()
    instance.init()
    instance.start()
    ports = instance.dir / "ports.json"
    written = json.loads(ports.read_text())
    assert set(written) == {"mx", "submission", "submissions", "imap", "imaps", "pop3", "pop3s", "web"}
    assert written["submissions"] == written["pop3s"] == []
    for name in ("mx", "submission", "imap", "imaps", "pop3", "web"):
        ((host, _, port),) = [address.rpartition(":") for address in written[name]]
        assert host == "127.0.0.1" and int(port) > 0, written
    assert ports.stat().st_mode & 0o777 == 0o644
    assert [path.name for path in instance.dir.glob("ports.json*")] == ["ports.json"]  # no part left behind
    with RawSession(instance.smtp_port) as session:
        assert session.greeting.startswith(b"220 mail.example.test")
    wait_until(lambda: f"listeners=127.0.0.1:{instance.smtp_port}," in instance.log(), timeout=10)  # logged just after
    (services,) = json.loads(instance.cli("check", "services", "--json").stdout)
    assert services["sentence"] == "all 6 listeners answer.", services
    instance.stop()
    assert not ports.exists()


def test_serve_refuses_a_port_in_use_in_one_line(jitaku_factory) -> None:
    instance: Jitaku = jitaku_factory()
    instance.fixed_port("mx")
    instance.init()
    stale = instance.dir / "ports.json"
    stale.write_text('{"mx": ["127.0.0.1:1"]}\n')  # as a daemon killed with -9 leaves it
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", instance.smtp_port))
        busy.listen()
        result = subprocess.run(
            [*JITAKU, "serve", "--dir", str(instance.dir)], capture_output=True, text=True, timeout=60
        )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{instance.smtp_port}" in lines[0], result.stderr
    assert not stale.exists()  # no run's ports: not the earlier one's, and this one got none


def test_a_second_serve_on_the_same_data_dir_says_which_pid_runs_it(jitaku_factory) -> None:
    """Even on listeners of its own: it started, and two queues and DDNS updaters shared one database (issue 17)."""
    instance: Jitaku = jitaku_factory()
    instance.init()
    instance.start()
    assert instance.process is not None
    lock = instance.dir / "serve.lock"
    assert lock.read_text() == f"{instance.process.pid}\n" and lock.stat().st_mode & 0o777 == 0o600
    for section in ("smtp", "submission", "web", "pop3", "imap"):  # nothing a second one could fail on
        instance.settings[section]["listen"] = [f"127.0.0.1:{free_port()}"]
    instance.write_config()
    second = subprocess.run([*JITAKU, "serve", "--dir", str(instance.dir)], capture_output=True, text=True, timeout=60)
    assert (second.returncode, second.stderr) == (
        1,
        f"jitaku: jitaku serve is already running on {instance.dir} (pid {instance.process.pid})\n",
    )
    assert instance.process.poll() is None and lock.read_text() == f"{instance.process.pid}\n"


def test_serve_starts_after_a_kill_9_left_its_lock_file_behind(jitaku_factory) -> None:
    """The power cut of the issue: a PID file kept the DDNS updater dead; the kernel's lock dies with its holder."""
    instance: Jitaku = jitaku_factory()
    instance.init()
    instance.start()
    instance.kill9()
    assert (instance.dir / "serve.lock").exists()
    instance.start()
    assert instance.process is not None
    assert (instance.dir / "serve.lock").read_text() == f"{instance.process.pid}\n"


def test_serve_refuses_a_bad_config_naming_file_line_and_key(jitaku_factory) -> None:
    instance: Jitaku = jitaku_factory()
    path = instance.dir / "jitaku.toml"
    path.write_text('domains = ["example.test"]\n\n[smtp]\nlisten = ["127.0.0.1:2525"]\nmax_message_size = "big"\n')
    result = subprocess.run([*JITAKU, "serve", "--dir", str(instance.dir)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert (
        result.stderr.strip()
        == f"jitaku: {path}:5: [smtp] max_message_size: Input should be a valid integer, unable to parse string as an integer"
    )
    path.write_text('domains = ["example.test"]\n[queue]\nretry_minimum = 5\n')
    result = subprocess.run([*JITAKU, "serve", "--dir", str(instance.dir)], capture_output=True, text=True, timeout=60)
    assert result.stderr.strip() == f"jitaku: {path}:3: unknown key [queue] retry_minimum"


def test_users_list_remove_and_passwd(server: Jitaku) -> None:
    assert json.loads(server.cli("user", "list", "--json").stdout) == [
        {"address": "alice@example.test", "admin": True},  # the first user
        {"address": "bob@example.org", "admin": False},
    ]
    server.cli("user", "admin", "bob@example.org")
    assert [u["admin"] for u in json.loads(server.cli("user", "list", "--json").stdout)] == [True, True]
    server.cli("user", "admin", "bob@example.org", "--revoke")
    assert [u["admin"] for u in json.loads(server.cli("user", "list", "--json").stdout)] == [True, False]
    server.cli("user", "passwd", "alice@example.test", "--password-stdin", input="new-password-1\n")
    out = swaks(
        "--server",
        f"127.0.0.1:{server.submission_port}",
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice@example.test",
        "--auth-password",
        "new-password-1",
        "--to",
        "bob@example.org",
        "--from",
        "alice@example.test",
    ).stdout
    assert "235 2.7.0" in out
    wait_until(lambda: server.mailbox("bob@example.org"))
    kept = server.cli("user", "remove", "bob@example.org", input="", check=False)  # no terminal to ask at
    assert (kept.returncode, kept.stderr) == (
        1,
        "jitaku: bob@example.org has 1 message; give --yes to remove the user and delete them (nothing changed)\n",
    )
    assert len(server.mailbox("bob@example.org")) == 1
    removed = server.cli("user", "remove", "bob@example.org", "--yes", input="")
    assert removed.stdout == "removed bob@example.org and 1 message\n"
    assert "bob@example.org" not in server.cli("user", "list").stdout
    duplicate = server.cli("user", "add", "alice@example.test", "--password-stdin", input="another-pass\n", check=False)
    assert duplicate.returncode != 0 and "exists" in duplicate.stderr and "Traceback" not in duplicate.stderr
    foreign = server.cli("user", "add", "x@elsewhere.test", "--password-stdin", input="another-pass\n", check=False)
    assert foreign.returncode != 0 and "not one of this server's domains" in foreign.stderr


def test_an_alias_that_leads_nowhere_is_refused_in_one_line_and_postmaster_keeps_working(server: Jitaku) -> None:
    """`alias add postmaster@ nobody@` was accepted, and postmaster@ refused mail from then on (issue 17)."""
    for alias, target, said in [
        (
            "postmaster@example.test",
            "nobody@example.test",
            "nobody@example.test is not a user, a list or an alias here (an address at another domain is forwarded)",
        ),
        ("info@example.test", "info@example.test", "info@example.test -> info@example.test would be a loop"),
    ]:
        refused = server.cli("alias", "add", alias, target, check=False)
        assert (refused.returncode, refused.stderr) == (1, f"jitaku: {said}\n")
    assert not [row for row in json.loads(server.cli("alias", "list", "--json").stdout) if not row["built_in"]]
    sent = swaks(
        "--server", f"127.0.0.1:{server.smtp_port}", "--to", "postmaster@example.test", "--from", "x@remote.test"
    )
    assert "250 2.0.0" in sent.stdout and len(server.mailbox("alice@example.test")) == 1
    assert server.cli("alias", "add", "postmaster@example.test", "bob@example.org").returncode == 0


@pytest.mark.both_databases
def test_mailbox_show_writes_the_stored_bytes_exactly(server: Jitaku) -> None:
    raw = (
        "From: =?UTF-8?B?5bGx55Sw?= <yamada@remote.test>\r\nTo: alice@example.test\r\n"
        "Subject: =?Shift_JIS?B?g2WDWINn?=\r\n\r\n\xe6\x97\xa5\xe6\x9c\xac\r\n"
    ).encode("latin-1")
    with RawSession(server.smtp_port) as session:
        assert session.start_data(sender="yamada@remote.test").startswith(b"354")
        assert session.command(raw + b".").startswith(b"250")
    (entry,) = server.mailbox("alice@example.test")
    assert entry["from"] == "山田 <yamada@remote.test>"
    assert entry["subject"] == "テスト"
    assert server.message("alice@example.test", entry["uid"]).endswith(raw)
    missing = server.cli("mailbox", "show", "alice@example.test", "99", check=False)
    assert missing.returncode != 0 and "no message 99" in missing.stderr


def test_list_commands_check_their_input_and_change_nothing_on_error(tmp_path: Path) -> None:
    data = tmp_path / "data"
    run("init", "--dir", str(data), "--domain", "example.test")

    def jitaku(*args: str) -> subprocess.CompletedProcess[str]:
        return run(*args, "--dir", str(data))

    assert jitaku("list", "create", "sota@example.test", "--name", "SOTA Japan").returncode == 0
    members = tmp_path / "members.txt"
    members.write_text("# exported from fml\nkenji@example.jp\n\nyuki@example.org   # chair\nKenji@Example.JP\n")
    imported = jitaku("list", "import", "sota@example.test", str(members))
    assert (
        imported.returncode == 0
        and "imported 2 members" in imported.stdout
        and "(1 was a member already)" in imported.stdout
    )
    bad = tmp_path / "bad.txt"
    bad.write_text("ok@example.jp\nnot an address\n")
    refused = jitaku("list", "import", "sota@example.test", str(bad))
    assert refused.returncode == 1 and refused.stderr.strip() == (
        f"jitaku: {bad}:2: not a plain mail address: 'not an address' (nothing imported)"
    )
    listed = json.loads(jitaku("list", "members", "sota@example.test", "--json").stdout)
    assert [m["address"] for m in listed] == ["kenji@example.jp", "yuki@example.org"]
    for args, message in [
        (
            ("list", "set", "sota@example.test", "dmarc", "sometimes"),
            "dmarc: 'sometimes' is not one of auto, munge, wrap, none",
        ),
        (("list", "set", "sota@example.test", "subject_tag", "[sota]"), "needs exactly one %d or %05d-style number"),
        (("list", "set", "sota@example.test", "colour", "blue"), "unknown setting 'colour'"),
        (("list", "create", "sota@example.test"), "list sota@example.test exists already"),
        (("list", "create", "team@elsewhere.test"), "not one of this server's domains"),
        (("list", "add", "nope@example.test", "a@b.example"), "no list nope@example.test"),
        (("list", "remove", "sota@example.test", "stranger@example.jp"), "not members of sota@example.test"),
    ]:
        result = jitaku(*args)
        assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
    shown = json.loads(jitaku("list", "show", "sota@example.test", "--json").stdout)[0]
    assert shown["dmarc"] == "auto" and shown["subject_tag"] == "[sota:%05d]" and shown["members"] == 2
    assert jitaku("list", "set", "sota@example.test", "reply-to", "sender").returncode == 0
    assert json.loads(jitaku("list", "show", "sota@example.test", "--json").stdout)[0]["reply_to"] == "sender"
    assert "[sota:%05d]" in jitaku("list", "show", "sota@example.test").stdout  # not eaten as markup
    assert jitaku("list", "delete", "sota@example.test").returncode == 0
    assert jitaku("list", "show", "sota@example.test").returncode == 1


STEERING = ("\x1b", "\x07", "\x9b", "\x7f", "\u202e", "\r")


def _read_or_end(reader: Any) -> bytes:
    """What a pseudo-terminal holds; b"" once its other side is closed (Linux answers EIO)."""
    try:
        return bytes(reader.read1(65536))
    except OSError:
        return b""


def test_a_strangers_subject_cannot_steer_the_owners_terminal(server: Jitaku) -> None:
    """Control characters in outside text print spelled out in every table, raw or from an encoded-word;
    Rich markup and emoji codes print as themselves, Japanese as itself; --json stays exact."""
    planted = [
        b"From: Mallory <mallory@remote.test>\r\nSubject: \x1b]0;pwned\x07\x1b[2J raw [bold]x[/] [/] :warning:\r\n",
        b"From: =?utf-8?b?4oCuZXZpbA==?= <eve@remote.test>\r\nSubject: =?utf-8?q?=1B[31mred=07=C2=9B?=\r\n",
        b"From: =?UTF-8?B?5bGx55Sw?= <yamada@remote.test>\r\nSubject: =?utf-8?b?5pel5pys6Kqe44Gu5Lu25ZCN?=\r\n",
    ]
    for head in planted:
        with RawSession(server.smtp_port) as session:
            assert session.start_data(sender="someone@remote.test").startswith(b"354")
            assert session.command(head + b"To: alice@example.test\r\n\r\nbody\r\n.").startswith(b"250")

    def cli(*args: str) -> str:
        result = run(*args, "--dir", str(server.dir), env={"COLUMNS": "400"})
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        return result.stdout

    exact = [row["subject"] for row in json.loads(cli("mailbox", "list", "alice@example.test", "--json"))]
    assert exact == ["\x1b]0;pwned\x07\x1b[2J raw [bold]x[/] [/] :warning:", "\x1b[31mred\x07\x9b", "日本語の件名"]
    shown = cli("mailbox", "list", "alice@example.test")
    assert not any(character in shown for character in STEERING), repr(shown)
    assert "\\x1b]0;pwned\\x07\\x1b[2J raw [bold]x[/] [/] :warning:" in shown  # no markup, no emoji codes
    assert "\\x1b[31mred\\x07\\x9b" in shown and "\\u202eevil" in shown
    assert "山田" in shown and "日本語の件名" in shown
    # `mailbox show` writes the stored bytes to a pipe, and spells the controls out to a terminal
    assert server.message("alice@example.test", 1).endswith(planted[0] + b"To: alice@example.test\r\n\r\nbody\r\n")
    controller, terminal = pty.openpty()
    with os.fdopen(controller, "rb") as reader:
        subprocess.run(
            [*JITAKU, "mailbox", "show", "alice@example.test", "1", "--dir", str(server.dir)],
            stdout=terminal,
            timeout=60,
            check=True,
        )
        os.close(terminal)
        seen = b""
        while chunk := _read_or_end(reader):
            seen += chunk
    assert b"\x1b" not in seen and b"\x07" not in seen and b"\\x1b]0;pwned\\x07" in seen
    # a stranger's post to a list is held, and its From and subject shown to the owner
    cli("list", "create", "sota@example.test", "--owner", "alice@example.test")
    with RawSession(server.smtp_port) as session:
        assert session.start_data(sender="mallory@remote.test", recipient="sota@example.test").startswith(b"354")
        assert session.command(
            b"From: \x1b[8mMallory <mallory@remote.test>\r\nSubject: held \x1b[5m\x07 [red]x\r\n\r\nbody\r\n."
        ).startswith(b"250")
    held = wait_until(lambda: json.loads(cli("list", "held", "sota@example.test", "--json")))
    assert held[0]["subject"] == "held \x1b[5m\x07 [red]x"
    shown = cli("list", "held", "sota@example.test")
    assert not any(character in shown for character in STEERING), repr(shown)
    assert "held \\x1b[5m\\x07 [red]x" in shown and "\\x1b[8mMallory" in shown


def test_init_sets_private_modes_whatever_the_umask_and_tightens_an_open_data_dir(tmp_path: Path) -> None:
    def mode(path: Path) -> int:
        return path.stat().st_mode & 0o777

    def init(data: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*JITAKU, "init", "--dir", str(data), "--domain", "example.test"],
            capture_output=True,
            text=True,
            timeout=60,
            umask=0,
        )

    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    elsewhere = tmp_path / "not-ours"  # what a stranger's link in the open directory points at
    elsewhere.write_text("x")
    elsewhere.chmod(0o644)
    (open_dir / "web.secret").symlink_to(elsewhere)
    result = init(open_dir)
    assert result.returncode == 0, result.stderr
    assert f"tightened {open_dir} from 0777 to 0700" in result.stdout
    assert f"could not check {open_dir / 'web.secret'}" in result.stdout and mode(elsewhere) == 0o644
    (open_dir / "web.secret").unlink()
    assert mode(open_dir) == 0o700
    assert mode(open_dir / "dkim") == mode(open_dir / "tls") == 0o700
    assert mode(open_dir / "dkim" / "example.test.jitaku.key") == mode(open_dir / "tls" / "key.pem") == 0o600
    assert mode(open_dir / "jitaku.toml") == mode(open_dir / "jitaku.db") == 0o600
    assert mode(open_dir / "tls" / "cert.pem") == 0o644
    # what another hand loosened later is tightened by the next init, and said
    (open_dir / "dkim").chmod(0o777)
    (open_dir / "dkim" / "example.test.jitaku.key").chmod(0o666)
    planted = open_dir / "dkim" / "\x1b]0;pwned\x07.key"  # a stranger's name, said to the owner's terminal
    planted.write_text("x")
    planted.chmod(0o666)
    again = init(open_dir)
    assert mode(open_dir / "dkim") == 0o700 and mode(open_dir / "dkim" / "example.test.jitaku.key") == 0o600
    assert f"tightened {open_dir / 'dkim'} from 0777 to 0700" in again.stdout
    assert f"tightened {open_dir / 'dkim'}/\\x1b]0;pwned\\x07.key from 0666 to 0600" in again.stdout
    assert not any(character in again.stdout for character in STEERING), repr(again.stdout)
    planted.unlink()
    # a new directory and the parents made for it, under umask 000
    nested = tmp_path / "made" / "for" / "jitaku"
    assert init(nested).returncode == 0
    assert mode(nested) == 0o700 and mode(nested.parent) == mode(nested.parent.parent) == 0o755
    assert mode(nested / "dkim") == mode(nested / "tls") == 0o700


@pytest.mark.parametrize("planted", ["tls/key.pem", "tls"])
def test_init_never_writes_through_a_link_planted_where_a_key_belongs(tmp_path: Path, planted: str) -> None:
    """A data directory others could write to may hold a link where init writes a key, or where its
    directory is: as root, init overwrote what it pointed at and made it 0600. Now it refuses, in one line,
    and leaves the target as it was."""
    data = tmp_path / "open"
    data.mkdir()
    data.chmod(0o777)
    elsewhere = tmp_path / "not-ours"
    elsewhere.mkdir()
    (elsewhere / "key.pem").write_text("precious\n")
    (elsewhere / "key.pem").chmod(0o644)
    link = data / planted
    link.parent.mkdir(exist_ok=True)
    link.symlink_to(elsewhere / "key.pem" if planted.endswith(".pem") else elsewhere)
    result = run("init", "--dir", str(data), "--domain", "example.test")
    assert result.returncode == 1 and "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1
    assert (
        "cannot write" in result.stderr and "symbolic links" in result.stderr and "internal error" not in result.stderr
    )
    assert f"could not check {link}" in result.stdout
    target = elsewhere / "key.pem"
    assert target.read_text() == "precious\n" and target.stat().st_mode & 0o777 == 0o644
    assert [path.name for path in elsewhere.iterdir()] == ["key.pem"]


def test_a_data_directory_that_is_a_link_is_the_owners_and_followed(tmp_path: Path) -> None:
    """Only links inside the data directory are refused: the directory the owner named may itself be one."""
    from jitaku.web.secret import session_secret

    (tmp_path / "disk").mkdir()
    (tmp_path / "jitaku-data").symlink_to(tmp_path / "disk")
    result = run("init", "--dir", str(tmp_path / "jitaku-data"), "--domain", "example.test")
    assert result.returncode == 0, result.stderr
    assert len(session_secret(tmp_path / "jitaku-data")) == 64  # made on serve's first start
    assert sorted(path.name for path in (tmp_path / "disk").iterdir()) == [
        "dkim",
        "jitaku.db",
        "jitaku.toml",
        "tls",
        "web.secret",
    ]


def test_mailbox_list_shows_whole_dates_and_every_word_at_80_and_40_columns_and_on_a_pipe(server: Jitaku) -> None:
    """Rich cut the dates to `2025-03-04T09:15:42+…` at 80 columns, and on a pipe (issue 17)."""
    head = (
        b"From: =?UTF-8?B?5bGx55SwIOWkqumDjg==?= <yamada.taro@remote.example.jp>\r\nTo: alice@example.test\r\n"
        b"Date: Tue, 04 Mar 2025 09:15:42 +0900\r\n"
        b"Subject: Meeting notes for the spring operating session and the antenna party\r\n"
    )
    with RawSession(server.smtp_port) as session:
        assert session.start_data(sender="yamada.taro@remote.example.jp").startswith(b"354")
        assert session.command(head + b"\r\nbody\r\n.").startswith(b"250")
    (entry,) = server.mailbox("alice@example.test")
    assert entry["date"] == "2025-03-04T09:15:42+09:00"
    args = ("mailbox", "list", "alice@example.test", "--dir", str(server.dir))
    for width in (80, 40):
        for shown in (through_pipe(*args, width=width), on_terminal(*args, width=width)[1]):
            assert all(cell_len(line) <= width for line in shown.splitlines()), shown
            assert "…" not in shown and any(entry["date"] in line for line in shown.splitlines()), shown
            words = shown.split()
            assert set(entry["subject"].split()) <= set(words), shown
            assert "山田" in words and "太郎" in words, shown
    assert through_pipe(*args[:2], "bob@example.org", *args[3:], width=80) == "no mail in bob@example.org's INBOX\n"


def test_every_listing_says_in_a_sentence_that_it_is_empty_and_json_is_an_empty_array(tmp_path: Path) -> None:
    """A lone header row said nothing (issue 17)."""
    data = tmp_path / "data"
    assert run("init", "--dir", str(data), "--domain", "example.test").returncode == 0
    assert run("list", "create", "sota@example.test", "--dir", str(data)).returncode == 0
    for args, sentence in [
        (("user", "list"), "no users yet: jitaku user add ADDRESS"),
        (("alias", "list"), "no aliases yet: jitaku alias add ALIAS TARGET"),
        (("queue", "list"), "the queue is empty: nothing waits to be delivered"),
        (("list", "members", "sota@example.test"), "no members yet: jitaku list add sota@example.test ADDRESS..."),
        (("list", "held", "sota@example.test"), "no posts to sota@example.test wait for a moderator"),
        (("list", "archive", "sota@example.test"), "no posts to sota@example.test yet"),
        (("ddns", "status"), "no [[ddns]] records in the config"),
    ]:
        said = run(*args, "--dir", str(data))
        assert (said.returncode, said.stdout, said.stderr) == (0, sentence + "\n", ""), args
        as_json = run(*args, "--json", "--dir", str(data))
        assert (as_json.returncode, json.loads(as_json.stdout)) == (0, []), args
    assert run("list", "delete", "sota@example.test", "--dir", str(data)).returncode == 0
    assert run("list", "list", "--dir", str(data)).stdout == "no lists yet: jitaku list create LIST\n"
    assert run("list", "list", "--json", "--dir", str(data)).stdout == "[]\n"
    nothing = run("check", "relay", "--dir", str(data))
    assert (nothing.returncode, nothing.stdout) == (0, "nothing to check: relay does not apply to this config\n")


def test_list_show_and_members_print_addresses_one_a_line_and_every_setting_yes_or_no(tmp_path: Path) -> None:
    """`list show` printed `['a@example.test']` and `{}`; `list members` said True where delivery said on
    (issue 17)."""
    data = tmp_path / "data"
    assert run("init", "--dir", str(data), "--domain", "example.test").returncode == 0

    def jitaku(*args: str) -> str:
        result = run(*args, "--dir", str(data), env={"COLUMNS": "80"})
        assert result.returncode == 0, result.stderr
        return result.stdout

    jitaku("list", "create", "sota@example.test", "--owner", "kenji@example.jp", "--owner", "yuki@example.org")
    jitaku("list", "add", "sota@example.test", "kenji@example.jp", "yuki@example.org")
    shown = jitaku("list", "show", "sota@example.test").splitlines()
    assert "owners            kenji@example.jp" in shown and "                  yuki@example.org" in shown
    assert "refused_by        none" in shown
    assert "'" not in "".join(shown) and "{}" not in "".join(shown)
    said = jitaku("list", "member", "sota@example.test", "yuki@example.org", "--no-self-copy", "--disable")
    assert said == "yuki@example.org: self_copy = no, enabled = no\n"
    assert jitaku("list", "members", "sota@example.test").splitlines() == [
        "address           delivery                 own posts  bounces",
        "kenji@example.jp  on                       yes        0",
        "yuki@example.org  off (disabled by owner)  no         0",
    ]
    for user in ("alice@example.test", "bob@example.test"):
        assert (
            run("user", "add", user, "--password-stdin", "--dir", str(data), input="secret-password\n").returncode == 0
        )
    assert jitaku("user", "list").splitlines() == [
        "address             admin",
        "alice@example.test  yes",
        "bob@example.test    no",
    ]


def test_user_remove_asks_at_the_terminal_before_it_deletes_mail(server: Jitaku) -> None:
    """It deleted a user's mail without a word (issue 17)."""
    with RawSession(server.smtp_port) as session:
        assert session.start_data(recipient="bob@example.org").startswith(b"354")
        assert session.command(b"Subject: keep me\r\n\r\nbody\r\n.").startswith(b"250")
    wait_until(lambda: server.mailbox("bob@example.org"))
    args = ("user", "remove", "Bob@example.org", "--dir", str(server.dir))
    question = b"bob@example.org has 1 message. Remove the user and delete them? [y/N]: "
    code, shown = on_terminal(*args, answer=(question, b"n\r"))
    assert code == 1 and shown.endswith("jitaku: nothing changed: bob@example.org and its mail are kept\n"), shown
    assert [entry["subject"] for entry in server.mailbox("bob@example.org")] == ["keep me"]
    code, shown = on_terminal(*args, answer=(question, b"\x04"))  # Ctrl-D: no answer is no
    assert code == 2 and "nothing changed" in shown and len(server.mailbox("bob@example.org")) == 1, shown
    code, shown = on_terminal(*args, answer=(question, b"y\r"))
    assert (code, shown.splitlines()[-1]) == (0, "removed bob@example.org and 1 message"), shown
    assert [user["address"] for user in json.loads(server.cli("user", "list", "--json").stdout)] == [
        "alice@example.test"
    ]
    server.add_user("carol@example.test")  # no mail: nothing to lose, nothing to ask
    assert server.cli("user", "remove", "carol@example.test", input="").stdout == "removed carol@example.test\n"


def test_alias_list_shows_the_built_in_postmaster_and_abuse_and_where_their_mail_goes(server: Jitaku) -> None:
    """They exist at every domain (RFC 2142) and went to the first user, but `alias list` did not show them
    (issue 17). What it shows is where mail to them really lands."""

    def listed() -> list[tuple[str, str, str]]:
        rows = json.loads(server.cli("alias", "list", "--json").stdout)
        assert all(set(row) == {"alias", "target", "built_in", "leads_nowhere"} for row in rows)
        return [
            (row["alias"], row["target"], "built-in" if row["built_in"] else "nowhere" if row["leads_nowhere"] else "")
            for row in rows
        ]

    def lands_with(address: str) -> str:
        users = [user["address"] for user in json.loads(server.cli("user", "list", "--json").stdout)]
        before = {user: len(server.mailbox(user)) for user in users}
        sent = swaks("--server", f"127.0.0.1:{server.smtp_port}", "--to", address, "--from", "x@remote.test")
        assert "250 2.0.0" in sent.stdout, sent.stdout
        return wait_until(lambda: [user for user, count in before.items() if len(server.mailbox(user)) > count])[0]

    assert listed() == [
        ("abuse@example.org", "alice@example.test", "built-in"),
        ("abuse@example.test", "alice@example.test", "built-in"),
        ("postmaster@example.org", "alice@example.test", "built-in"),
        ("postmaster@example.test", "alice@example.test", "built-in"),
    ]
    assert lands_with("abuse@example.org") == "alice@example.test"
    server.cli("alias", "add", "postmaster@example.test", "bob@example.org")
    server.cli("alias", "add", "info@example.test", "bob@example.org")
    assert ("postmaster@example.test", "bob@example.org", "") in listed()
    assert ("postmaster@example.test", "alice@example.test", "built-in") not in listed()  # the alias overrides it
    assert lands_with("postmaster@example.test") == "bob@example.org"
    server.cli("user", "remove", "bob@example.org", "--yes")  # the aliases to bob now lead nowhere
    assert lands_with("postmaster@example.test") == "alice@example.test"
    assert server.cli("alias", "list").stdout.splitlines()[:7] == [
        "alias                    target              note",
        "abuse@example.org        alice@example.test  built-in",
        "abuse@example.test       alice@example.test  built-in",
        "info@example.test        bob@example.org     leads nowhere: its mail is refused",
        "postmaster@example.org   alice@example.test  built-in",
        "postmaster@example.test  bob@example.org     leads nowhere: the built-in one",
        "                                             takes its mail",
    ]
    assert listed()[-1] == ("postmaster@example.test", "alice@example.test", "built-in")
