"""`jitaku serve` loads only what the daemon uses: the command line's libraries (Typer, Rich), apprise without
an alert URL, httpx without a heartbeat or buddy, psutil, prometheus_client without a metrics token, and jinja2
before the first page are each megabytes of the idle memory held under 80 MB (issue 20). Easy to bring back
with one import at the top of a module; tests/integration/test_memory.py measures the whole."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jitaku import app as daemon
from jitaku import store
from jitaku.cli import serve_dir
from jitaku.cli.commands import app
from jitaku.store import Database, accounts

NOT_IN_THE_DAEMON = ("apprise", "typer", "rich", "httpx", "psutil", "prometheus_client", "jinja2")
# What `jitaku serve` imports: the entry and the daemon, and what the daemon imports as it starts (the health
# monitor, the web app); `python -m jitaku serve` runs jitaku.cli.main.
SERVE_IMPORTS = ("jitaku.cli", "jitaku.app", "jitaku.health.monitor", "jitaku.web.status")


# The store's modules moved off SQLAlchemy's Core (issue 20 item 4: `import sqlalchemy` is 14 MB of the idle
# memory), each imported under a bare stand-in for the package, whose __init__ binds every table group: a
# module that goes back to Core is named here, apart from the daemon as a whole (test_serve_imports_no_sqlalchemy).
OFF_SQLALCHEMY = (
    "jitaku.lists.compose",
    "jitaku.lists.tokens",
    "jitaku.store.accounts",
    "jitaku.store.attempts",
    "jitaku.store.blog",
    "jitaku.store.comments",
    "jitaku.store.database",
    "jitaku.store.ddns",
    "jitaku.store.health",
    "jitaku.store.lists",
    "jitaku.store.logins",
    "jitaku.store.mailstore",
    "jitaku.store.queue",
    "jitaku.store.site",
    "jitaku.store.tallies",
    "jitaku.health.history",
    "jitaku.web.metrics",
)
BARE_STORE = (
    "import importlib, json, sys, types\n"
    "from pathlib import Path\n"
    "import jitaku\n"
    "bare = types.ModuleType('jitaku.store')\n"
    "bare.__path__ = [str(Path(jitaku.__file__).parent / 'store')]\n"
    "sys.modules['jitaku.store'] = bare\n"
)
LOADED = "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'alembic'})))\n"


def _loaded_by(code: str) -> list[str]:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return list(json.loads(result.stdout))


def test_the_store_modules_moved_to_prepared_sql_import_no_sqlalchemy() -> None:
    code = BARE_STORE + f"for name in {OFF_SQLALCHEMY!r}: importlib.import_module(name)\n" + LOADED
    assert _loaded_by(code) == []


def test_a_database_at_the_newest_schema_opens_reads_and_writes_without_sqlalchemy(tmp_path: Path) -> None:
    """The daemon's start (the schema check), its writer and its readers, on what has moved to prepared SQL."""
    url = f"sqlite:///{tmp_path / 'jitaku.db'}"
    Database(url).close()  # made and migrated, as `jitaku init` does
    code = (
        BARE_STORE
        + (
            "import asyncio\n"
            "from jitaku.store import accounts, attempts, ddns, health, logins, queue, tallies\n"
            "from jitaku.store.database import Database\n"
            f"database = Database({url!r})\n"
            "result = health.Reading('queue', 1, 'Mail waits.', {'size': 3.0}, 'size')\n"
            "status = health.Status('queue', 1, 'size', 'Mail waits.', 100.0, 100.0, 'problem', frozenset({2}))\n"
            "alert = health.Alert(100.0, 'queue', 'problem', 1, 'Queue', 'Mail waits.', False)\n"
            "def judged(tx):\n"
            "    health.record(tx, result, 100.0)\n"
            "    health.save_status(tx, status)\n"
            "    health.add_alert(tx, alert)\n"
            "async def go():\n"
            "    await database.transact(lambda tx: accounts.add_user(tx, 'alice@example.test', 'hash'))\n"
            "    alice = await database.query(lambda s: accounts.find_user(s, 'Alice@example.test'))\n"
            "    assert (alice.address, alice.admin, alice.session_generation) == ('alice@example.test', True, 0)\n"
            "    await database.transact(lambda tx: accounts.end_sessions(tx, 'alice@example.test'))\n"
            "    assert database.query_now(accounts.list_users)[0].session_generation == 1\n"
            "    directory = await database.query(accounts.load_directory)\n"
            "    assert directory.users == {'alice@example.test'} and directory.version == await database.query(accounts.current_version)\n"
            "    await database.transact(judged)\n"
            "    assert await database.query(health.latest) == {'queue': (100.0, result)}\n"
            "    assert await database.query(health.statuses) == {'queue': status}\n"
            "    assert await database.query(health.recent_alerts) == [alert]\n"
            "    assert await database.query(lambda s: health.series(s, 'queue', 0.0)) == [(100.0, {'size': 3.0})]\n"
            "    await database.transact(lambda tx: health.prune(tx, 100.0 + health.KEEP_RESULTS + 1))\n"
            "    assert await database.query(health.latest) == {}\n"
            "    state = ddns.State('home.example.test', 4, 'dyndns2', 'k', address='192.0.2.1')\n"
            "    await database.transact(lambda tx: ddns.save(tx, state))\n"
            "    await database.transact(lambda tx: logins.start(tx, '192.0.2.9', 'a', 100.0, 0.0, 5, 20))\n"
            "    await database.transact(lambda tx: tallies.add(tx, {(60, tallies.MAIL_IN): 2}))\n"
            "    assert [s.address for s in await database.query(ddns.all_states)] == ['192.0.2.1']\n"
            "    assert (await database.query(lambda s: logins.counts(s, '192.0.2.9', 'a', 0.0, 100.0))).pending_login == 1\n"
            "    assert database.query_now(tallies.totals) == {tallies.MAIL_IN: 2}\n"
            "    add = 'INSERT INTO queue (id, sender, created_at, next_attempt, attempts, body) VALUES (?, ?, 1.0, 1.0, 0, ?)'\n"
            "    await database.transact(lambda tx: tx.run(add, ('Q1', 'a@x.test', b'hi')))\n"
            "    to = 'INSERT INTO queue_recipients (queue_id, recipient) VALUES (?, ?)'\n"
            "    await database.transact(lambda tx: tx.run_many(to, [('Q1', 'b@y.test'), ('Q1', 'c@y.test')]))\n"
            "    (due,) = await database.query(lambda s: queue.due(s, 2.0, (), 10))\n"
            "    assert due.recipients == ('b@y.test', 'c@y.test')\n"
            "    assert await database.query(lambda s: queue.body_of(s, 'Q1')) == b'hi'\n"
            "    await database.transact(lambda tx: attempts.record(tx, 'Q1', ['b@y.test'], {'c@y.test': '451'}, 9.0))\n"
            "    assert (await database.query(queue.backlog)) == (1, 1.0, '451')\n"
            "    assert await database.transact(lambda tx: queue.flush(tx, 3.0)) == 1\n"
            "    assert [m.recipients for m in database.query_now(queue.list_queue)] == [('c@y.test',)]\n"
            "    assert await database.transact(lambda tx: queue.remove(tx, 'Q1'))\n"
            "asyncio.run(go())\n"
            "database.close()\n"
        )
        + LOADED
    )
    assert _loaded_by(code) == []


def test_imap_pop3_and_the_status_page_use_the_mail_store_without_sqlalchemy(tmp_path: Path) -> None:
    """What the daemon does to mailboxes (IMAP's CREATE, RENAME, SUBSCRIBE, APPEND, DELETE; POP3's login,
    RETR and QUIT; the status page's counts), on a database a user was added to by the CLI."""
    url = f"sqlite:///{tmp_path / 'jitaku.db'}"
    database = Database(url)
    with database.transaction() as connection:
        accounts.add_user(connection, "alice@example.test", None)
    database.close()
    code = (
        BARE_STORE
        + (
            "import asyncio\n"
            "from jitaku.store import mailstore as m\n"
            "from jitaku.store.database import Database\n"
            f"database = Database({url!r})\n"
            "a = 'alice@example.test'\n"
            "async def go():\n"
            "    await database.transact(lambda tx: m.create_mailbox(tx, a, 'Trips/2026', limit=10))\n"
            "    await database.transact(lambda tx: m.subscribe(tx, a, 'Trips/2026', limit=10))\n"
            "    await database.transact(lambda tx: m.rename_mailbox(tx, a, 'Trips', 'Travel'))\n"
            "    await database.transact(lambda tx: m.append(tx, a, b'Subject: one\\r\\n\\r\\nhi\\r\\n'))\n"
            "    await database.transact(lambda tx: m.append(tx, a, b'two', 'Travel/2026'))\n"
            "    await database.transact(lambda tx: m.delete_mailbox(tx, a, 'Travel/2026'))\n"
            "    await database.transact(lambda tx: m.unsubscribe(tx, a, 'Travel/2026'))\n"
            "    assert 'Travel/2026' not in await database.query(lambda s: m.subscriptions(s, a))\n"
            "    drop = await database.query(lambda s: m.maildrop(s, a))\n"
            "    assert [uid for uid, _size in drop.messages] == [1]\n"
            "    assert (await database.query(lambda s: m.get_message(s, a, 1))).body.endswith(b'hi\\r\\n')\n"
            "    assert await database.transact(lambda tx: m.remove(tx, a, [1])) == 1\n"
            "    assert await database.query(m.message_counts) == [(a, 0)]\n"
            "asyncio.run(go())\n"
            "database.close()\n"
        )
        + LOADED
    )
    assert _loaded_by(code) == []


def test_a_list_post_is_taken_numbered_archived_and_its_members_read_without_sqlalchemy(tmp_path: Path) -> None:
    """What the list runner does with each post, through the daemon's reads and writer; the list is made as
    `jitaku list create` makes it, on a Core connection."""
    url = f"sqlite:///{tmp_path / 'jitaku.db'}"
    database = Database(url)
    with database.transaction() as connection:
        store.lists.create_list(connection, "sota@example.test", "SOTA", "[sota:%05d]", "list", "auto", "")
    database.close()
    code = (
        BARE_STORE
        + (
            "import asyncio\n"
            "from jitaku.store import lists\n"
            "from jitaku.store.database import Database\n"
            f"database = Database({url!r})\n"
            "async def go():\n"
            "    found = await database.query(lambda s: lists.find_list(s, 'sota@example.test'))\n"
            "    await database.transact(lambda tx: lists.add_members(tx, found.id, ['a@example.org', 'b@example.org']))\n"
            "    await database.transact(lambda tx: lists.add_inbox(tx, found.address, 'post', found.address, 'a@example.org', b'hi', 1.0))\n"
            "    item = await database.query(lambda s: lists.inbox_item(s, lists.next_inbox(s, 2.0)))\n"
            "    def commit(tx):\n"
            "        assert lists.take_number(tx, found.id, 1)\n"
            "        lists.archive(tx, found.id, 1, item.sender, 'a', 'hello', item.body)\n"
            "        lists.remove_inbox(tx, item.id, item.lease)\n"
            "    await database.transact(commit)\n"
            "    assert [m.address for m in await database.query(lambda s: lists.members(s, found.id))] == ['a@example.org', 'b@example.org']\n"
            "    assert await database.query(lambda s: lists.next_inbox(s, 2.0)) is None\n"
            "    assert database.query_now(lambda s: lists.post_body(s, found.id, 1)) == b'hi'\n"
            "    assert [(x['members'], x['posts']) for x in await database.query(lists.summaries)] == [(2, 1)]\n"
            "asyncio.run(go())\n"
            "database.close()\n"
        )
        + LOADED
    )
    assert _loaded_by(code) == []


def test_serve_imports_no_sqlalchemy() -> None:
    code = f"import importlib, json, sys\nfor name in {SERVE_IMPORTS!r}: importlib.import_module(name)\n" + LOADED
    assert _loaded_by(code) == []


def test_the_daemon_imports_none_of_the_optional_libraries() -> None:
    code = (
        "import importlib, json, sys\n"
        f"for name in {SERVE_IMPORTS!r}: importlib.import_module(name)\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules if m.split('.')[0] in {NOT_IN_THE_DAEMON!r}}})))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(result.stdout) == [], "imported by `jitaku serve`, which must load them only when used"


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["serve"], None),
        (["serve"], ""),  # empty: as if unset
        (["serve"], "from-env"),
        (["serve", "--dir", "given"], "from-env"),
        (["serve", "--dir=given"], None),
    ],
)
def test_serve_runs_on_the_directory_typer_would_give_it(
    args: list[str], env: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    if env is None:
        monkeypatch.delenv("JITAKU_DIR", raising=False)
    else:
        monkeypatch.setenv("JITAKU_DIR", env)
    given: list[Path] = []
    monkeypatch.setattr(daemon, "serve", given.append)
    app(args, prog_name="jitaku", standalone_mode=False)
    assert serve_dir(args) == given[0]


@pytest.mark.parametrize(
    "args",
    [["serve", "--help"], ["serve", "--dir"], ["serve", "--dir", "--help"], ["serve", "extra"], ["serve", "--dir="]],
)
def test_anything_else_is_left_to_typer(args: list[str]) -> None:
    assert serve_dir(args) is None
