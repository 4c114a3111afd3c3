"""What the verdicts and the lists make of a message (mail/filters/decision.py, CONTRACTS.md "Filters"): a virus
refused for all, an engine's own reject counting whatever the score, one DATA reply that refuses only when every
recipient's outcome is a refusal, the others' copies in Junk, an engine down following on_error."""

from __future__ import annotations

from jitaku.config import FiltersSettings
from jitaku.mail.filters.decision import decide
from jitaku.mail.filters.verdict import EngineError, Verdict

SETTINGS = FiltersSettings(reject_score=15, junk_score=5)
GTUBE = Verdict("rspamd", score=0.0, action="reject", symbols=("GTUBE",), reason="Gtube pattern")
HAM = Verdict("spamassassin", score=-0.1, symbols=("BAYES_00",))
JUNK = Verdict("spamassassin", score=7.2, action="spam", symbols=("BAYES_99", "URIBL_BLOCKED"))
HIGH = Verdict("spamassassin", score=22.0, action="spam", symbols=("BAYES_99",), reason="score 22.0")
EICAR = Verdict("clamav", virus="Eicar-Test-Signature", reason="virus Eicar-Test-Signature")


def unlisted(recipient: str) -> str | None:
    return None


def test_a_virus_is_refused_for_everyone_even_from_an_allowed_or_authenticated_sender() -> None:
    for authenticated in (False, True):
        found = decide(SETTINGS, [HAM, EICAR], [], ["a@example.test"], lambda r: "allow", authenticated)
        assert found.refused is not None and str(found.refused) == (
            "554 5.7.1 Message refused: virus Eicar-Test-Signature found"
        )


def test_an_engines_own_reject_refuses_whatever_the_score() -> None:
    found = decide(SETTINGS, [GTUBE], [], ["a@example.test", "b@example.test"], unlisted)
    assert found.refused is not None and found.refused.code == 550 and "Gtube pattern" in found.refused.text


def test_one_reply_refuses_only_when_every_recipient_would_refuse() -> None:
    lists = {"a@example.test": None, "b@example.test": "allow"}
    found = decide(SETTINGS, [HIGH], [], list(lists), lists.get)
    assert found.refused is None
    assert [(o.recipient, o.place) for o in found.outcomes] == [("a@example.test", "junk"), ("b@example.test", "inbox")]
    assert b"X-Spam-Status: Yes\r\n" in found.headers and b"X-Spam-Score: 22.0\r\n" in found.headers


def test_a_copy_an_allow_rule_let_into_inbox_says_so_and_not_that_our_filter_called_it_spam() -> None:
    """Thunderbird sets NonJunk on it by itself: were it to say Yes, that would teach the engines spam as ham."""
    lists = {"a@example.test": None, "b@example.test": "allow"}
    found = decide(SETTINGS, [JUNK], [], list(lists), lists.get)
    assert [(o.place, o.why) for o in found.outcomes] == [
        ("junk", "spamassassin: score 7.2"),
        ("inbox", "sender allowed"),
    ]
    assert found.headers.startswith(b"X-Spam-Status: Yes\r\nX-Spam-Score: 7.2\r\n")
    assert found.allowed_headers.startswith(b"X-Spam-Status: No (sender allowed)\r\nX-Spam-Score: 7.2\r\n")
    down = decide(SETTINGS, [], [EngineError("rspamd", "timeout")], ["b@example.test"], lambda r: "allow")
    assert down.allowed_headers == down.headers == b"X-Spam-Status: Unchecked (rspamd unavailable)\r\n"


def test_scores_place_the_copy_by_the_worst_engine() -> None:
    assert [o.place for o in decide(SETTINGS, [HAM], [], ["a@x.test"], unlisted).outcomes] == ["inbox"]
    assert [o.place for o in decide(SETTINGS, [HAM, JUNK], [], ["a@x.test"], unlisted).outcomes] == ["junk"]
    refused = decide(SETTINGS, [HIGH], [], ["a@x.test"], unlisted).refused
    assert refused is not None and str(refused) == "550 5.7.1 Message refused as spam: spamassassin: score 22.0"
    headers = decide(SETTINGS, [HAM, JUNK], [], ["a@x.test"], unlisted).headers.decode()
    assert "X-Spam-Symbols: spamassassin=BAYES_00;\r\n spamassassin=BAYES_99,URIBL_BLOCKED\r\n" in headers


def test_lists_decide_before_scores() -> None:
    blocked = decide(SETTINGS, [HAM], [], ["a@x.test"], lambda r: "block").refused
    assert blocked is not None and str(blocked) == "550 5.7.1 Message refused: sender blocked"
    allowed = decide(SETTINGS, [GTUBE], [], ["a@x.test"], lambda r: "allow")
    assert allowed.refused is None and allowed.outcomes[0].place == "inbox"


def test_an_engine_down_follows_on_error() -> None:
    down = [EngineError("rspamd", "connection refused")]
    accepted = decide(SETTINGS, [HAM], down, ["a@x.test"], unlisted)
    assert accepted.refused is None and accepted.outcomes[0].place == "inbox"
    assert b"X-Spam-Status: Unchecked (rspamd unavailable)\r\n" in accepted.headers
    tempfail = FiltersSettings(on_error="tempfail")
    refused = decide(tempfail, [HAM], down, ["a@x.test"], unlisted).refused
    assert refused is not None and str(refused).startswith("451 4.7.1 Message not checked (rspamd unavailable)")


def test_authenticated_mail_is_scanned_for_viruses_only() -> None:
    found = decide(SETTINGS, [GTUBE], [], ["a@elsewhere.example"], lambda r: "block", authenticated=True)
    assert found.refused is None and found.outcomes[0].place == "inbox"


def test_what_an_engine_says_reaches_a_header_as_printable_ascii_only() -> None:
    odd = Verdict("rspamd", score=9.0, symbols=("A B", "C,D", "自宅", "X;Y"), reason="理由\r\nInjected: yes")
    found = decide(SETTINGS, [odd], [], ["a@x.test"], unlisted)
    assert found.headers.decode("ascii").count("\r\n") == 3
    assert b"rspamd=A_B,C_D,__,X_Y" in found.headers
    refusing = decide(FiltersSettings(reject_score=5), [odd], [], ["a@x.test"], unlisted).refused
    assert refusing is not None and "\r" not in refusing.text and "\n" not in refusing.text


def test_many_long_rule_names_are_folded_into_lines_a_server_takes() -> None:
    many = Verdict("rspamd", score=1.0, symbols=tuple(f"RULE_{n:02d}_" + "X" * 57 for n in range(40)))
    headers = decide(SETTINGS, [many], [], ["a@x.test"], unlisted).headers.decode("ascii")
    lines = headers.split("\r\n")
    assert max(len(line) for line in lines) <= 100 and all(line.startswith((" ", "X-")) for line in lines if line)
    unfolded = headers.replace("\r\n ", "")
    assert all(f"RULE_{n:02d}_" in unfolded for n in range(40))


def test_a_senders_own_x_spam_fields_are_dropped_and_the_rest_kept_byte_for_byte() -> None:
    from jitaku.mail.filters.decision import without_ours

    forged = (
        b"From: a@x.test\r\nX-Spam-Status: No\r\nx-spam-score:\r\n -5.0\r\nX-Spam-Flag: NO\r\n"
        b"X-Spam-Level: \r\nX-Spam-Report: kept\r\n\r\nbody\r\n"
    )
    assert without_ours(forged) == b"From: a@x.test\r\nX-Spam-Report: kept\r\n\r\nbody\r\n"
    plain = b"From: a@x.test\r\nSubject: X-Spam-Status\r\n\r\nX-Spam-Status: No\r\n"
    assert without_ours(plain) == plain  # a subject or a body that names the field is not one


def test_a_message_scanned_only_in_part_is_delivered_saying_so() -> None:
    partly = Verdict("clamav", reason="clean in the first 26214400 of 35000000 bytes", whole=False)
    for authenticated in (False, True):
        found = decide(SETTINGS, [HAM, partly], [], ["a@example.test"], unlisted, authenticated)
        assert found.refused is None and [o.place for o in found.outcomes] == ["inbox"]
        assert b"X-Virus-Status: Partly scanned (clamav: clean in the first 26214400 of 35000000 bytes)\r\n" in (
            found.headers
        )
    whole = decide(SETTINGS, [HAM, Verdict("clamav")], [], ["a@example.test"], unlisted)
    assert b"X-Virus-Status" not in whole.headers  # a clean scan is no news


def test_a_senders_own_x_virus_status_is_dropped_where_we_write_ours() -> None:
    from jitaku.mail.filters.decision import without_ours

    forged = b"From: a@x.test\r\nX-Virus-Status: Clean\r\nX-Virus-Scanned: ClamAV\r\n\r\nbody\r\n"
    assert without_ours(forged) == b"From: a@x.test\r\nX-Virus-Scanned: ClamAV\r\n\r\nbody\r\n"
