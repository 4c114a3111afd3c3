"""The allow and block lists (issue 23): `jitaku filter allow|block [--user | --domain] PATTERN`, `filter list
--json` and `filter remove ID` as CONTRACTS.md names them, and which list decides: a user's over their domain's
over everyone's, an address over its domain, a domain over its parent, block over allow in one list."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from jitaku.mail.filters import rulebook
from jitaku.store import Database, filters
from jitaku.store.filters import Rule, RuleError, decide, judge, pattern_of
from tests.postgres import database_url
from tests.test_blog_cli import jitaku

pytestmark = pytest.mark.both_databases  # the store's: run on PostgreSQL too (scripts/test)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "jitaku.toml").write_text('domains = ["example.test", "example.org"]\n')
    added = subprocess.run(
        [sys.executable, "-m", "jitaku", "user", "add", "alice@example.test", "--password-stdin", "--dir", str(data)],
        input="correct horse battery staple\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert added.returncode == 0, added.stderr
    return data


def rule(scope: filters.Scope, owner: str, action: filters.Action, pattern: str, rule_id: int = 0) -> Rule:
    return Rule(rule_id, scope, owner, action, pattern)


def test_patterns_are_addresses_or_domains_in_any_of_the_usual_spellings() -> None:
    assert pattern_of("Kenji@Example.JP") == "kenji@example.jp"
    assert pattern_of("example.jp") == pattern_of("@example.jp") == pattern_of("*@Example.jp") == "example.jp"
    for wrong in ("", "jp", "kenji@", "exa mple.jp", "@", "a..b", "<x@y.z>"):
        with pytest.raises(RuleError):
            pattern_of(wrong)


def test_the_most_particular_list_naming_the_sender_decides() -> None:
    rules = [
        rule("global", "", "block", "spam.example"),
        rule("domain", "example.test", "allow", "news.spam.example"),
        rule("user", "alice@example.test", "block", "news.spam.example"),
        rule("global", "", "allow", "friend@spam.example"),
    ]
    assert decide(rules, "bob@example.test", "x@spam.example") == "block"
    assert decide(rules, "bob@example.test", "x@mail.spam.example") == "block"  # a subdomain too
    assert decide(rules, "bob@example.test", "friend@spam.example") == "allow"  # an address over its domain
    assert decide(rules, "bob@example.test", "x@news.spam.example") == "allow"  # the domain's list over the global
    assert decide(rules, "alice@example.test", "x@news.spam.example") == "block"  # the user's over the domain's
    assert decide(rules, "carol@example.org", "x@news.spam.example") == "block"  # another domain: the global list
    assert decide(rules, "bob@example.test", "x@notspam.example") is None  # spam.example is no suffix of it
    assert decide(rules, "bob@example.test", "") is None  # the null sender
    both = [rule("global", "", "allow", "x.example"), rule("global", "", "block", "x.example")]
    assert decide(both, "bob@example.test", "a@x.example") == "block"


def test_the_cli_adds_lists_and_removes_rules(data: Path) -> None:
    added = jitaku(data, "filter", "block", "*@spam.example")
    assert added.returncode == 0 and "block spam.example for everyone" in added.stdout
    assert jitaku(data, "filter", "allow", "--user", "alice@example.test", "Friend@Spam.example").returncode == 0
    assert jitaku(data, "filter", "allow", "--domain", "example.org", "news.example").returncode == 0
    listed = json.loads(jitaku(data, "filter", "list", "--json").stdout)
    assert [(r["scope"], r["action"], r["pattern"]) for r in listed] == [
        ("domain", "allow", "news.example"),
        ("global", "block", "spam.example"),
        ("user", "allow", "friend@spam.example"),
    ]
    assert all(set(r) >= {"id", "scope", "action", "pattern"} for r in listed)
    again = jitaku(data, "filter", "allow", "spam.example")  # the same list and pattern: its action changes
    assert again.returncode == 0
    assert [
        r["action"] for r in json.loads(jitaku(data, "filter", "list", "--json").stdout) if r["scope"] == "global"
    ] == ["allow"]
    gone = listed[0]["id"]
    assert jitaku(data, "filter", "remove", str(gone)).returncode == 0
    assert gone not in [r["id"] for r in json.loads(jitaku(data, "filter", "list", "--json").stdout)]
    missing = jitaku(data, "filter", "remove", str(gone))
    assert missing.returncode == 1 and f"no rule {gone}" in missing.stderr


def test_bad_input_is_named_and_changes_nothing(data: Path) -> None:
    for args, said in (
        (("block", "not a domain"), "is not an address nor a domain"),
        (("block", "--user", "nobody@example.test", "x.example"), "no user nobody@example.test"),
        (("block", "--domain", "elsewhere.example", "x.example"), "is not one of this server's domains"),
        (("block", "--user", "alice@example.test", "--domain", "example.test", "x.example"), "not both"),
    ):
        result = jitaku(data, "filter", *args)
        assert result.returncode == 1 and said in result.stderr and "Traceback" not in result.stderr, args
    assert json.loads(jitaku(data, "filter", "list", "--json").stdout) == []


def test_a_users_lists_apply_to_mail_that_reaches_them_through_an_alias() -> None:
    rules = [rule("user", "kenji@example.test", "block", "spam.example")]
    assert decide(rules, "info@example.test", "x@spam.example", mailbox="kenji@example.test") == "block"
    assert decide(rules, "info@example.test", "x@spam.example", mailbox="yuki@example.test") is None


def test_an_allow_rule_counts_for_a_vouched_name_and_a_block_rule_for_any() -> None:
    rules = [
        rule("global", "", "allow", "friend@bank.example"),
        rule("global", "", "block", "spam.example"),
        rule("user", "alice@example.test", "allow", "news.example"),
    ]
    forged, vouched = (lambda address: False), (lambda address: True)
    friend = ("friend@bank.example", "friend@bank.example")
    assert judge(rules, "bob@example.test", friend, vouched) == "allow"
    assert judge(rules, "bob@example.test", friend, forged) is None  # scored: no block names it either
    # the envelope or the From address: either name may be the allowed one, and only its own vouching counts
    envelope_only = ("bounces@mailer.example", "friend@bank.example")
    assert judge(rules, "bob@example.test", envelope_only, lambda a: a == "friend@bank.example") == "allow"
    assert judge(rules, "bob@example.test", envelope_only, lambda a: a == "bounces@mailer.example") is None
    # a blocked name is refused, vouched for or not, even beside an allowed one
    assert judge(rules, "bob@example.test", ("x@spam.example", "friend@bank.example"), vouched) == "block"
    assert judge(rules, "bob@example.test", ("friend@bank.example", "x@spam.example"), forged) == "block"
    assert judge(rules, "info@example.test", ("a@news.example",), vouched, mailbox="alice@example.test") == "allow"
    assert judge(rules, "bob@example.test", ("", ""), vouched) is None  # the null sender and no From


def test_an_allow_rule_for_a_forged_name_takes_back_no_broader_block() -> None:
    rules = [
        rule("global", "", "block", "evil.example"),
        rule("user", "bob@example.test", "allow", "friend@evil.example"),
        rule("user", "carol@example.test", "allow", "friend@evil.example"),
        rule("user", "carol@example.test", "block", "evil.example"),
    ]
    forged, vouched = (lambda address: False), (lambda address: True)
    friend = ("friend@evil.example", "friend@evil.example")
    assert judge(rules, "bob@example.test", friend, vouched) == "allow"  # the real friend, as bob asked
    assert judge(rules, "bob@example.test", friend, forged) == "block"  # anyone writing that name: as the rest
    assert judge(rules, "bob@example.test", ("other@evil.example", "other@evil.example"), forged) == "block"
    assert judge(rules, "carol@example.test", friend, forged) == "block"  # a broader block of one's own list too
    assert judge(rules, "carol@example.test", friend, vouched) == "allow"


def test_the_mx_keeps_the_rules_and_reads_them_again_only_when_a_change_bumped_the_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(rulebook.time, "monotonic", lambda: clock[0])
    database = Database(database_url(tmp_path))
    reads: list[str] = []
    query = database.query

    async def counted(q: Any, snapshot: bool = True) -> Any:
        reads.append(getattr(q, "__name__", "?"))
        return await query(q, snapshot)

    monkeypatch.setattr(database, "query", counted)
    kept = rulebook.Rulebook(database)

    def current() -> list[tuple[str, str]]:
        return [(r.action, r.pattern) for r in asyncio.run(kept.current())]

    try:
        assert current() == [] and len(reads) == 2  # the version, then the rules with theirs
        with database.transaction() as connection:  # as `jitaku filter block` writes, in its own process
            filters.add(connection, "global", "", "block", "spam.example")
        assert current() == [] and len(reads) == 2  # within the second: no read at all
        clock[0] += 1
        assert current() == [("block", "spam.example")] and len(reads) == 4
        clock[0] += 1
        assert current() == [("block", "spam.example")] and len(reads) == 5  # the version alone: unchanged
        with database.transaction() as connection:  # the same pattern: its action changes, its id stays
            filters.add(connection, "global", "", "allow", "spam.example")
        clock[0] += 1
        assert current() == [("allow", "spam.example")]
        with database.transaction() as connection:
            filters.remove(connection, filters.rules(connection)[0].id)
        clock[0] += 1
        assert current() == []
    finally:
        database.close()
