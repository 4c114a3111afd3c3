"""`[database]` for a managed PostgreSQL cluster: config.py's keys and errors, and ha/config_text.py's edit of
jitaku.toml, which adds those keys and keeps every other line as the owner wrote it."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from jitaku.config import Config, ConfigError, Listen, parse
from jitaku.ha.config_text import ConfigTextError, managed_database
from jitaku.provision import TEMPLATE

PATH = Path("/srv/jitaku/jitaku.toml")
DOMAINS = 'domains = ["example.org"]\n'


def test_sqlite_stays_the_default_and_a_managed_cluster_listens_on_5433() -> None:
    database = parse(DOMAINS, PATH).database
    assert (database.url, database.managed, database.listen) == ("", False, (Listen("127.0.0.1", 5433),))
    assert Config(parse(DOMAINS, PATH), PATH.parent).database_url == "sqlite:////srv/jitaku/jitaku.db"


def test_a_managed_cluster_is_reached_on_loopback_with_its_password_file() -> None:
    settings = parse(DOMAINS + '[database]\nmanaged = true\nlisten = ["0.0.0.0:6543", "[::]:6543"]\n', PATH)
    assert settings.database.listen == (Listen("0.0.0.0", 6543), Listen("::", 6543))
    assert settings.database.managed_url == "postgresql://jitaku@127.0.0.1:6543/jitaku"
    url = Config(settings, PATH.parent).database_url
    assert url == "postgresql://jitaku@127.0.0.1:6543/jitaku?passfile=/srv/jitaku/postgres/jitaku.pgpass"


def test_the_url_given_is_kept_and_the_password_file_added_to_its_query() -> None:
    text = DOMAINS + '[database]\nmanaged = true\nlisten = ["[::1]:5433"]\n'
    text += 'url = "postgresql://jitaku@[::1]:5433/mail?connect_timeout=5"\n'
    url = Config(parse(text, PATH), PATH.parent).database_url
    assert url == "postgresql://jitaku@[::1]:5433/mail?connect_timeout=5&passfile=/srv/jitaku/postgres/jitaku.pgpass"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ('managed = true\nurl = "postgresql://jitaku:hunter2@127.0.0.1/jitaku"', "url: managed = true keeps the pass"),
        ('managed = true\nurl = "sqlite:///x.db"', r"url: managed = true runs PostgreSQL: expected postgresql://"),
        ('listen = ["127.0.0.1:5433", "[::1]:5434"]', "listen: PostgreSQL listens on one port .*got 5433, 5434"),
        ('listen = ["127.0.0.1:0"]', "listen: port must be 1-65535, got 0"),
        ("listen = []", 'listen: expected at least one "host:port"'),
        ('listen = ["localhost"]', 'listen: expected "host:port"'),
        ('managed = "maybe"', "managed: Input should be a valid boolean"),
        (
            'managed = true\nlisten = ["127.0.0.1:6000"]\nurl = "postgresql://jitaku@127.0.0.1:5433/jitaku"',
            r"url: managed = true: the url names 127.0.0.1:5433, where the managed cluster does not listen "
            r"\(127.0.0.1:6000\); leave url empty",
        ),
        (
            'managed = true\nurl = "postgresql://jitaku@db.example.org/jitaku"',
            "url: .* names db.example.org:5432, where",
        ),
    ],
)
def test_bad_database_keys_name_file_line_and_key(section: str, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"^/srv/jitaku/jitaku.toml:\d+: \[database\] {message}"):
        parse(DOMAINS + "[database]\n" + section + "\n", PATH)


def test_a_password_in_an_external_servers_url_is_its_owners_business() -> None:
    settings = parse(DOMAINS + '[database]\nurl = "postgresql://app:secret@db.example.org/mail"\n', PATH)
    assert Config(settings, PATH.parent).database_url == "postgresql://app:secret@db.example.org/mail"


def changed(before: str, after: str) -> list[str]:
    """The lines AFTER has and BEFORE has not, and those BEFORE lost (prefixed -)."""
    diff = difflib.ndiff(before.splitlines(), after.splitlines())
    return [line[2:] if line.startswith("+") else line for line in diff if line[:1] in "+-"]


def test_inits_config_gets_its_database_keys_and_keeps_every_other_line() -> None:
    text = TEMPLATE.format(
        hostname="mail.example.org", domain="example.org", run="", smtp="", submission="", submissions="",
        imap="", imaps="", pop3="", pop3s="", web="",
    )  # fmt: skip
    edited = managed_database(text, PATH)
    lines = changed(text, edited.text)
    assert lines[0].startswith('- url = ""') and lines[1].startswith('url = "postgresql://')  # its comment kept
    assert lines[2].startswith("managed = true") and lines[3].startswith('listen = ["127.0.0.1:5433"]')
    assert len(lines) == 4
    settings = parse(edited.text, PATH).database
    assert settings.managed and settings.url == "postgresql://jitaku@127.0.0.1:5433/jitaku"  # as CONTRACTS says
    url = 'url = "postgresql://jitaku@127.0.0.1:5433/jitaku"'
    assert edited.added == [url, "managed = true", 'listen = ["127.0.0.1:5433"]']


def test_a_config_without_database_gets_the_section_at_its_end() -> None:
    text = DOMAINS + "# my notes\n[web]  # the site\nlisten = ['127.0.0.1:80']\n"
    edited = managed_database(text, PATH)
    assert edited.text.startswith(text)
    assert parse(edited.text, PATH).database.managed
    assert edited.text[len(text) :].startswith("\n[database]\nmanaged = true")


@pytest.mark.parametrize("last", ['[database]\nurl = ""', "[database]", '[web]\nurl = ""'])
def test_a_last_line_without_its_newline_keeps_its_own_line(last: str) -> None:
    text = DOMAINS + last
    edited = managed_database(text, PATH)
    settings = parse(edited.text, PATH)
    assert settings.database.managed and settings.database.url == "postgresql://jitaku@127.0.0.1:5433/jitaku"
    kept = text if last.startswith("[web]") else text.replace('url = ""', f'url = "{settings.database.url}"')
    assert edited.text.startswith(kept + "\n")


def test_a_listen_of_the_owners_own_is_kept_and_the_url_names_it() -> None:
    text = DOMAINS + '[database]\nlisten = [\n  "192.0.2.7:6000",  # the LAN\n]\n\n[web]\nurl = ""\n'
    edited = managed_database(text, PATH)
    settings = parse(edited.text, PATH)
    assert settings.database.listen == (Listen("192.0.2.7", 6000),)
    assert settings.database.managed_url == "postgresql://jitaku@192.0.2.7:6000/jitaku"
    assert settings.web.url == ""  # the next section's key stayed in it
    assert [line for line in changed(text, edited.text) if line.startswith("-")] == []
    assert edited.added == ["managed = true", 'url = "postgresql://jitaku@192.0.2.7:6000/jitaku"']
    with pytest.raises(ConfigError, match=r"url names 192.0.2.7:6000, where the managed cluster does not listen"):
        parse(edited.text.replace('"192.0.2.7:6000",', '"192.0.2.7:6001",'), PATH)  # listen moved, url not


def test_a_config_already_managed_is_left_as_it_is() -> None:
    text = managed_database(DOMAINS, PATH).text
    again = managed_database(text, PATH)
    assert again.text == text and again.added == []


def test_managed_false_is_turned_true_in_its_own_line() -> None:
    text = DOMAINS + "[database]\nmanaged = false  # not yet\n"
    edited = managed_database(text, PATH)
    assert "managed = true  # not yet\n" in edited.text
    assert parse(edited.text, PATH).database.managed


def test_a_url_of_another_database_is_refused_not_overwritten() -> None:
    with pytest.raises(ConfigTextError, match=r"\[database\] url names sqlite:///old.db, not PostgreSQL"):
        managed_database(DOMAINS + '[database]\nurl = "sqlite:///old.db"\n', PATH)


def test_a_bad_config_is_said_as_such_before_any_edit() -> None:
    with pytest.raises(ConfigError, match=r"\[smtp\] listen"):
        managed_database(DOMAINS + "[smtp]\nlisten = 7\n", PATH)


def test_a_relative_data_dir_gives_absolute_paths_for_pg_ctl_and_libpq(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/tmp")
    config = Config(parse(DOMAINS + "[database]\nmanaged = true\n", PATH), Path("jitaku-data"))
    assert config.postgres_dir == Path("/tmp/jitaku-data/postgres")
    assert config.database_url.endswith("?passfile=/tmp/jitaku-data/postgres/jitaku.pgpass")
