"""`jitaku db copy` moves a real install from SQLite to PostgreSQL (issue 24): mail taken over SMTP, flags set and
a folder made over IMAP, a list with members, a blog post with a reader's comment; the daemon stopped, a new data
directory's config pointed at a new PostgreSQL database, the copy made; then the daemon on PostgreSQL shows IMAP
the same UIDVALIDITY, UIDs, flags and bodies, takes the same password, and gives new mail the next UID."""

from __future__ import annotations

import imaplib
import json
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from alembic import command

from jitaku.store.engine import migrations_config
from jitaku.store.revision import SCHEMA_REVISION
from tests import postgres
from tests.integration.harness import READER, Jitaku, deliver
from tests.peers import free_port, wait_for_port, wait_until

PASSWORD = "secret-password"
LIST = "sota@example.test"
MEMBERS = ("ken@remote.test", "mai@remote.test")
POST = "---\ntitle: 自宅サーバー\ndate: 2024-05-01\nslug: jitaku\n---\n本文です。\n"
Mailbox = dict[str, Any]  # "uidvalidity", "uidnext", "highestmodseq" and "messages": UID -> (flags, modseq, body)


@pytest.fixture
def postgresql_url() -> str:
    try:
        postgres.binaries()
    except RuntimeError as error:
        pytest.skip(f"PostgreSQL is needed to copy into: {error}")
    return postgres.server().database()


def test_an_install_moves_from_sqlite_to_postgresql_with_every_uid_flag_and_password(
    jitaku_factory: Any, tmp_path: Path, postgresql_url: str
) -> None:
    old: Jitaku = on_sqlite(jitaku_factory(name="old"))
    old.init(READER, "bob@example.org")
    old.cli("list", "create", LIST, "--name", "SOTA Japan", "--owner", READER)
    old.cli("list", "add", LIST, *MEMBERS)
    posts = tmp_path / "posts"
    posts.mkdir()
    (posts / "a.md").write_text(POST)
    old.cli("blog", "import", str(posts))
    old.start()
    wait_for_port(old.imap_port)
    _comment(old)
    wait_until(lambda: old.mailbox(READER))  # the owner's mail of it: UID 1
    deliver(old, "second", "third", "fourth 自宅")
    imap = _login(old)
    imap.select("INBOX")
    imap.uid("STORE", "2", "+FLAGS", "(\\Flagged \\Seen $Work)")
    imap.create("Projects")
    imap.uid("COPY", "2:3", "Projects")
    imap.uid("STORE", "4", "+FLAGS", "(\\Deleted)")
    imap.expunge()  # INBOX keeps UIDs 1 to 3; its next is 5 all the same
    imap.logout()
    before = {name: _read(old, name) for name in ("INBOX", "Projects")}
    assert sorted(before["INBOX"]["messages"]) == [1, 2, 3] and before["INBOX"]["uidnext"] == 5
    assert before["INBOX"]["messages"][2][0] == ["$Work", "\\Flagged", "\\Seen"]
    assert before["INBOX"]["messages"][2][1] > before["INBOX"]["messages"][3][1]  # its flags' change moved it on
    comments = json.loads(old.cli("blog", "comments", "--json").stdout)
    assert len(comments) == 1

    new: Jitaku = jitaku_factory(name="new")
    new.settings["database"] = {"url": postgresql_url}
    new.write_config()
    new.cli("init")
    for given in (str(old.dir), str(old.dir / "jitaku.db"), f"sqlite:///{old.dir / 'jitaku.db'}"):
        running = new.cli("db", "copy", "--from", given, check=False)
        assert running.returncode == 1 and running.stdout == "", given
        assert (
            running.stderr
            == f"jitaku: jitaku serve is already running on {old.dir} (pid {old.process.pid}): stop it before copying\n"
        ), given  # type: ignore[union-attr]
    old.stop()

    copied = new.cli("db", "copy", "--from", str(old.dir))

    lines = copied.stdout.splitlines()
    assert re.search(r"\bmessages\s+5\b", copied.stdout), copied.stdout  # 3 in INBOX, 2 in Projects
    assert re.search(r"\blist_members\s+2\b", copied.stdout), copied.stdout
    assert lines[-2].startswith("copied ") and lines[-2].endswith("into " + postgresql_url + "; their counts agree")
    assert (
        lines[-1]
        == f"files are not in the database: copy {old.dir}'s dkim/ and tls/ here too if this install takes its place"
    )
    assert copied.stderr == ""
    new.start()
    wait_for_port(new.imap_port)
    assert {name: _read(new, name) for name in ("INBOX", "Projects")} == before  # same password, same everything
    assert json.loads(new.cli("blog", "comments", "--json").stdout) == comments
    members = json.loads(new.cli("list", "members", LIST, "--json").stdout)
    assert sorted(member["address"] for member in members) == sorted(MEMBERS)

    deliver(new, "fifth, on PostgreSQL")
    after = _read(new, "INBOX")
    assert sorted(after["messages"]) == [1, 2, 3, 5]  # the next UID; a new row id past the copied ones
    assert b"fifth, on PostgreSQL" in after["messages"][5][2]
    assert after["highestmodseq"] > before["INBOX"]["highestmodseq"]
    new.stop()

    again = new.cli("db", "copy", "--from", str(old.dir), check=False)
    assert again.returncode == 1 and again.stdout == ""
    assert again.stderr == (
        "jitaku: the target database already holds data (in users, messages, lists and 7 more tables): jitaku db copy"
        " fills only a new, empty one, and wrote nothing\n"
    )
    new.start()
    wait_for_port(new.imap_port)
    assert _read(new, "INBOX") == after


def test_the_same_directory_moves_to_postgresql_by_its_config(jitaku_factory: Any, postgresql_url: str) -> None:
    """The config edited in place to name PostgreSQL: the copy reads the jitaku.db the directory used before."""
    server: Jitaku = on_sqlite(jitaku_factory())
    server.init(READER)
    server.start()
    deliver(server, "kept")
    before = _read(server, "INBOX")
    server.stop()
    old = f"sqlite:///{server.dir.resolve() / 'jitaku.db'}"
    _migrate(old, "downgrade", "0022")  # a jitaku upgraded since it last ran
    server.settings["database"] = {"url": postgresql_url}
    server.write_config()

    copied = server.cli("db", "copy", "--from", str(server.dir))

    assert copied.stdout.startswith(f"brought {old} from schema revision 0022 to {SCHEMA_REVISION} first\n")
    assert f"from {old} into {postgresql_url}" in copied.stdout
    assert "files are not in the database" not in copied.stdout
    server.start()
    wait_for_port(server.imap_port)
    assert _read(server, "INBOX") == before


def test_what_is_not_a_jitaku_install_is_refused_in_one_sentence(jitaku_factory: Any, tmp_path: Path) -> None:
    server: Jitaku = on_sqlite(jitaku_factory())
    server.cli("init")
    empty = tmp_path / "empty"
    empty.mkdir()
    for given, said in [
        (str(empty), f"{empty} is not a jitaku data directory: it holds neither jitaku.toml nor jitaku.db"),
        (str(tmp_path / "nowhere"), f"{tmp_path / 'nowhere'}: no such data directory or database file"),
        (
            str(server.dir),
            f"sqlite:///{server.dir.resolve() / 'jitaku.db'} is this data directory's own database: copy from another",
        ),
    ]:
        result = server.cli("db", "copy", "--from", given, check=False)
        assert (result.returncode, result.stdout, result.stderr) == (1, "", f"jitaku: {said}\n")


def test_a_target_out_of_reach_leaves_an_older_source_as_it_was(jitaku_factory: Any, tmp_path: Path) -> None:
    """The target is checked before the source is migrated: a server not started (a wrong password, a target
    holding data) does not leave the old install at a schema its own jitaku may not know."""
    source = tmp_path / "old" / "jitaku.db"
    source.parent.mkdir()
    url = f"sqlite:///{source}"
    sa.create_engine(url).dispose()
    _migrate(url, "upgrade", "0022")
    new: Jitaku = jitaku_factory(name="new")
    target = f"postgresql://jitaku:hunter2@127.0.0.1:{free_port()}/jitaku"  # nothing listens there
    new.settings["database"] = {"url": target}
    new.write_config()

    refused = new.cli("db", "copy", "--from", str(source), check=False)

    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.startswith(f"jitaku: cannot open {target.replace('hunter2', '***')}: "), refused.stderr
    assert "hunter2" not in refused.stderr and len(refused.stderr.splitlines()) == 1
    with sqlite3.connect(source) as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [("0022",)]


def on_sqlite(instance: Jitaku) -> Jitaku:
    """INSTANCE on SQLite, as the installs moved are, also in the PostgreSQL pass (JITAKU_TEST_DATABASE)."""
    if postgres.on_postgresql():
        instance.settings.pop("database", None)
        instance.prepared = None  # a prepared copy of the pass's is a database of PostgreSQL's
        instance.write_config()
    return instance


def _migrate(url: str, way: str, revision: str) -> None:
    """The database at URL brought up or down (WAY) to REVISION, as an older jitaku left it."""
    engine = sa.create_engine(url)
    config = migrations_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, way)(config, revision)
    engine.dispose()


def _login(server: Jitaku) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
    imap.login(READER, PASSWORD)
    return imap


def _read(server: Jitaku, name: str) -> Mailbox:
    """NAME's UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ and every message's flags, MODSEQ and body, as IMAP shows them
    to READER."""
    imap = _login(server)
    try:
        _, status = imap.status(name, "(UIDVALIDITY UIDNEXT HIGHESTMODSEQ)")
        numbers = dict(re.findall(rb"(UIDVALIDITY|UIDNEXT|HIGHESTMODSEQ) (\d+)", status[0] or b""))
        imap.select(name, readonly=True)
        _, fetched = imap.uid("FETCH", "1:*", "(UID FLAGS MODSEQ BODY.PEEK[])")
        messages = {}
        for item in fetched:
            if isinstance(item, tuple):
                uid = int(re.search(rb"UID (\d+)", item[0]).group(1))  # type: ignore[union-attr]
                flags = re.search(rb"FLAGS \(([^)]*)\)", item[0]).group(1)  # type: ignore[union-attr]
                modseq = int(re.search(rb"MODSEQ \((\d+)\)", item[0]).group(1))  # type: ignore[union-attr]
                messages[uid] = (sorted(flags.decode().split()), modseq, item[1])
    finally:
        imap.logout()
    return {
        "uidvalidity": int(numbers[b"UIDVALIDITY"]),
        "uidnext": int(numbers[b"UIDNEXT"]),
        "highestmodseq": int(numbers[b"HIGHESTMODSEQ"]),
        "messages": messages,
    }


def _comment(server: Jitaku) -> None:
    """A reader's comment on the post, as a browser without JavaScript sends it."""
    [post] = json.loads(server.cli("blog", "posts", "--json").stdout)
    with httpx.Client(base_url=f"http://127.0.0.1:{server.web_port}", timeout=10) as browser:
        assert browser.get("/2024/05/jitaku/").status_code == 200  # the form's token, in a cookie
        time.sleep(2.1)  # a form sent sooner is refused as a robot's
        form = {"name": "読者", "email": "reader@remote.test", "url": "", "website": "", "body": "いい記事です"}
        saved = browser.post(f"/comments/{post['id']}", data=form)
        assert saved.status_code == 200 and "saved" in saved.text
    wait_until(lambda: json.loads(server.cli("blog", "comments", "--json").stdout))
