"""config.py: minimal files work, bad ones are named by file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jitaku.config import ConfigError, Listen, LoginSettings, parse
from jitaku.resolver import Nameserver, parse_nameserver

PATH = Path("/etc/jitaku/jitaku.toml")


def test_only_domains_is_needed() -> None:
    settings = parse('domains = ["Example.ORG"]\n', PATH)
    assert settings.domains == ("example.org",)
    assert settings.smtp.listen == (Listen("127.0.0.1", 2525),)
    assert settings.relay is None
    assert settings.queue.retry_min == 300 and settings.queue.retry_max == 3600 and settings.queue.max_age == 432000
    assert settings.delivery.port == 25
    assert settings.mail_hostname == "mail.example.org"


def test_a_single_listen_string_is_a_one_item_list() -> None:
    settings = parse('domains = ["example.org"]\n[submission]\nlisten = "[::1]:587"\n', PATH)
    assert settings.submission.listen == (Listen("::1", 587),)


def test_a_listener_may_ask_for_any_free_port_and_a_port_to_reach_may_not() -> None:
    """Port 0 binds whatever port the kernel gives (the daemon writes it to ports.json); a buddy's target is
    a port to connect to, where 0 means nothing."""
    settings = parse('domains = ["example.org"]\n[smtp]\nlisten = ["127.0.0.1:0", "[::1]:0"]\n', PATH)
    assert settings.smtp.listen == (Listen("127.0.0.1", 0), Listen("::1", 0))
    with pytest.raises(ConfigError, match=r"\[health\.buddy\] theirs: port must be 1-65535, got 0"):
        parse('domains = ["example.org"]\n[health.buddy]\ntheirs = ["192.0.2.1:0"]\n', PATH)


def test_relay_section_and_nameservers() -> None:
    settings = parse(
        'domains = ["example.org"]\n[relay]\nhost = "[auth.gate-on.net]"\n[dns]\nnameservers = ["127.0.0.1:5353", "::1"]\n',
        PATH,
    )
    assert settings.relay is not None and settings.relay.host == "auth.gate-on.net" and settings.relay.port == 587
    assert settings.dns.nameservers == (Nameserver("127.0.0.1", 5353), Nameserver("::1", 53))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hostname = 'x.org'\n", f"{PATH}: missing key domains"),
        ('domains = ["example.org"]\ncolour = 1\n', f"{PATH}:2: unknown key colour"),
        (
            'domains = ["example.org"]\n[smtp]\nlisten = ["nowhere"]\n',
            f"{PATH}:3: [smtp] listen: expected \"host:port\", got 'nowhere'",
        ),
        (
            'domains = ["example.org"]\n[smtp]\nlisten = ["1.2.3.4:99999"]\n',
            f"{PATH}:3: [smtp] listen: port must be 0-65535, got 99999",
        ),
        (
            'domains = ["example.org"]\n\n[dns]\nnameservers = ["resolver.example"]\n',
            f'{PATH}:4: [dns] nameservers: expected "ip" or "ip:port", got \'resolver.example\'',
        ),
        ('domains = ["example.org"]\n[relay]\nport = 587\n', f"{PATH}:2: missing key [relay] host"),
        (
            'domains = ["not a domain"]\n',
            f"{PATH}:1: domains: expected a domain name like example.org, got 'not a domain'",
        ),
        (
            'domains = ["example.org"]\n[queue]\nretry_min = -1\n',
            f"{PATH}:3: [queue] retry_min: Input should be greater than 0",
        ),
        (
            'domains = ["example.org"]\n[[ddns]]\nprovider = "mydns"\nname = "example.org"\nusername = "m1"\n'
            'password = "p"\n\n[[ddns]]\nprovider = "dyndns2"\nname = "home.example.org"\nusername = "u"\n'
            'password = "p"\nipv4 = "maybe"\n',
            f"{PATH}:13: [ddns] ipv4: Input should be a valid boolean, unable to interpret input",
        ),
        (
            'domains = ["example.org"]\n[[ddns]]\nprovider = "mydns"\nname = "example.org"\nusername = "m1"\n'
            'password = "p"\n\n[[ddns]]\nprovider = "mydns"\nname = "home.example.org"\nusername = "m2"\n',
            f"{PATH}:8: ddns: mydns needs password (or password_file)",
        ),
        (
            'domains = ["example.org"]\n[alerts]\nurls = ["json://a/b", 5]\n',
            f"{PATH}:3: [alerts] urls: Input should be a valid string",
        ),
        (
            'domains = ["example.org"]\n[web]\nmetrics_token = "short"\n',
            f"{PATH}:3: [web] metrics_token: expected 16 or more characters, printable ASCII without spaces "
            "(it alone guards /metrics)",
        ),
        (
            'domains = ["example.org"]\n[blog]\ntimezone = "Tokyo"\n',
            f"{PATH}:3: [blog] timezone: expected a time zone name like Asia/Tokyo, got 'Tokyo'",
        ),
        (
            'domains = ["example.org"]\n[blog]\npermalink = "/{year}/{month}/"\n',
            f"{PATH}:3: [blog] permalink: '/{{year}}/{{month}}/' needs {{slug}}, or two posts of one day would share a URL",
        ),
        (
            'domains = ["example.org"]\n[health.raid]\ninterval = 0\n',
            f"{PATH}:3: [health.raid] interval: Input should be greater than 0",
        ),
        (
            'domains = ["example.org"]\n[filters.rspamd]\nurl = "http://127.0.0.1:99999"\n',
            f"{PATH}:3: [filters.rspamd] url: expected a port 1-65535 in 'http://127.0.0.1:99999'",
        ),
        (
            'domains = ["example.org"]\n[filters.rspamd]\nurl = ""\n',
            f"{PATH}:3: [filters.rspamd] url: expected a URL like http://127.0.0.1:11333",
        ),
        (
            'domains = ["example.org"]\n[filters.rspamd]\nurl = "http://127.0.0.1:11333"\n'
            'controller_url = "http://admin:secret@127.0.0.1:11334"\n',
            f"{PATH}:4: [filters.rspamd] controller_url: expected no user or password in the URL (the controller's"
            " goes in `password`)",
        ),
    ],
)
def test_bad_values_name_file_line_and_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse(text, PATH)
    assert str(raised.value) == message


def test_toml_syntax_errors_carry_the_position() -> None:
    with pytest.raises(ConfigError, match=r"jitaku.toml: .*line 2"):
        parse('domains = ["example.org"]\n[smtp\n', PATH)


def test_nameserver_forms() -> None:
    assert parse_nameserver("192.0.2.1") == Nameserver("192.0.2.1", 53)
    assert parse_nameserver("[2001:db8::1]:5300") == Nameserver("2001:db8::1", 5300)
    with pytest.raises(ValueError):
        parse_nameserver("192.0.2.1:0")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_is_a_config_or_a_config_error(text: str) -> None:
    try:
        parse(text, PATH)
    except ConfigError as error:
        assert str(error).startswith(str(PATH))


@pytest.mark.parametrize(("cores", "threads"), [(1, 1), (2, 2), (16, 4), (None, 1)])
def test_passwords_are_checked_on_a_thread_per_core_up_to_four(
    monkeypatch: pytest.MonkeyPatch, cores: int | None, threads: int
) -> None:
    """One argon2 thread on two cores made ten mail clients logging in at once wait 350 ms each (issue 20)."""
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    assert LoginSettings().hash_threads == threads
    assert LoginSettings(hash_threads=1).hash_threads == 1
