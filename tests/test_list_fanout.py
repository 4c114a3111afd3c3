"""How the list runner groups members' copies into queue entries (no servers)."""

from __future__ import annotations

from jitaku.lists import verp
from jitaku.lists.posting import COPIES_PER_ENTRY, personalise
from jitaku.mail.dkim import Signer
from jitaku.store.lists import MailingList

LIST = MailingList(
    id=1,
    address="sota@example.test",
    name="SOTA",
    subject_tag="[sota:%05d]",
    reply_to="list",
    dmarc="auto",
    owners=(),
    last_number=0,
    bounce_threshold=5.0,
    digest_last_number=0,
    digest_sent_at=0.0,
    secret="00" * 32,
)


def test_copies_go_one_entry_per_domain_and_at_most_a_session_full_each() -> None:
    big = [f"m{i}@gmail.test" for i in range(COPIES_PER_ENTRY + 7)]
    small = ["a@one.test", "b@one.test", "c@two.test"]
    shared = b"Subject: x\r\n\r\nbody\r\n"
    copies = personalise(
        Signer([]),
        "https://mail.example.test",
        LIST,
        shared,
        big + small + ["alice@example.test"],
        {"alice@example.test": "alice@example.test"},
    )
    assert sorted(len(entry.recipients) for entry in copies.queued) == [1, 2, 7, COPIES_PER_ENTRY]
    for entry in copies.queued:
        assert len({address.rpartition("@")[2] for address in entry.recipients}) == 1
        assert set(entry.personal) == set(entry.recipients)
        assert entry.sender == LIST.role_address("bounces")
        for address in entry.recipients:
            assert entry.personal[address].sender == verp.bounce_address(LIST.address, address, LIST.key)
            assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in entry.personal[address].prefix
    ((mailbox, message),) = [(copy.mailbox, copy.message) for copy in copies.local]
    assert mailbox == "alice@example.test"
    signed = verp.bounce_address(LIST.address, "alice@example.test", LIST.key)
    assert signed.endswith("=alice=example.test@example.test")
    assert message.startswith(f"Return-Path: <{signed}>\r\n".encode())
