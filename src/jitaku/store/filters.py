"""The allow and block lists of senders: the owner's for everyone (global), a domain's for its recipients, a
user's for their own mail (issue 23). A rule names the envelope sender or the From address, either: an allowed
sender skips spam scoring (never virus scanning) when our checks vouch for the name the rule matched (see
mail/filters/senders.py), and a blocked one is refused, vouched for or not; a name not vouched for is judged by
the block rules alone. For each name, the most particular list that names it decides: a user's over their
domain's over the global one, so that a user may take back mail the owner blocks for all; within one list an
address over its domain, a domain over its parent; and block over allow when one list says both of the same
pattern."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from jitaku.addresses import parse
from jitaku.store import accounts
from jitaku.store.statements import Statements
from jitaku.store.transaction import Tx, statements_of, tx_of

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

Scope = Literal["global", "domain", "user"]
Action = Literal["allow", "block"]
SCOPES: tuple[Scope, ...] = ("user", "domain", "global")  # the most particular first
ACTIONS: tuple[Action, ...] = ("allow", "block")


class RuleError(Exception):
    """A pattern that is no address nor domain: nothing is stored."""


@dataclass(frozen=True)
class Rule:
    id: int
    scope: Scope
    owner: str  # the user's address or the domain; "" for global
    action: Action
    pattern: str  # an address, or a domain (its subdomains too)

    def as_json(self) -> dict[str, object]:
        return {"id": self.id, "scope": self.scope, "owner": self.owner, "action": self.action, "pattern": self.pattern}


def pattern_of(text: str) -> str:
    """TEXT as a stored pattern: an address lowercased, or a domain from "example.jp", "@example.jp" or
    "*@example.jp" (SpamAssassin's way); RuleError naming what is wrong."""
    text = text.strip().lower()
    domain = text.removeprefix("*").removeprefix("@") if text.startswith(("@", "*@")) else text
    if "@" in domain:
        if parse(domain) is None:
            raise RuleError(f"{text!r} is not an address nor a domain")
        return domain
    labels = domain.rstrip(".").split(".")
    if len(labels) < 2 or not all(label and len(label) <= 63 for label in labels) or len(domain) > 253:
        raise RuleError(f"{text!r} is not an address nor a domain (like kenji@example.jp or example.jp)")
    if any(not all(c.isalnum() or c == "-" for c in label) for label in labels):
        raise RuleError(f"{text!r}: a domain holds letters, digits, - and dots only")
    return ".".join(labels)


def add(target: Connection | Tx, scope: Scope, owner: str, action: Action, pattern: str) -> Rule:
    """A new rule, or the rule of that list for PATTERN changed to ACTION. Each change bumps the directory's
    version, which the running MX reads to know its kept rules are old (mail/filters/rulebook.py)."""
    tx = tx_of(target)
    stored = pattern_of(pattern)
    rows = tx.run(
        "INSERT INTO filter_rules (scope, owner, action, pattern, created_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (scope, owner, pattern) DO UPDATE SET action = excluded.action RETURNING id",
        (scope, owner.lower(), action, stored, time.time()),
    )
    accounts.changed(tx)
    return Rule(int(rows[0][0]), scope, owner.lower(), action, stored)


def remove(target: Connection | Tx, rule_id: int) -> bool:
    tx = tx_of(target)
    if not tx.run("DELETE FROM filter_rules WHERE id = ? RETURNING id", (rule_id,)):
        return False
    accounts.changed(tx)
    return True


def rules(source: Connection | Statements) -> list[Rule]:
    rows = statements_of(source).run(
        "SELECT id, scope, owner, action, pattern FROM filter_rules ORDER BY scope, owner, pattern"
    )
    return [Rule(int(r[0]), r[1], str(r[2]), r[3], str(r[4])) for r in rows]


def decide(found: Iterable[Rule], recipient: str, sender: str, mailbox: str | None = None) -> Action | None:
    """What the lists say of mail from SENDER (an envelope or From address) to RECIPIENT, whose user is MAILBOX
    (an alias leads to its user, whose own lists then apply): "allow", "block", or None when no list names the
    sender."""
    recipient, sender = recipient.lower(), sender.lower()
    domain = recipient.rpartition("@")[2]
    owners: dict[Scope, str] = {"user": (mailbox or recipient).lower(), "domain": domain, "global": ""}
    names = _names(sender)
    for scope in SCOPES:
        matching = [r for r in found if r.scope == scope and r.owner == owners[scope] and r.pattern in names]
        if matching:
            best = min(names.index(r.pattern) for r in matching)
            actions = {r.action for r in matching if names.index(r.pattern) == best}
            return "block" if "block" in actions else "allow"
    return None


def judge(
    found: Iterable[Rule],
    recipient: str,
    senders: Sequence[str],
    vouched: Callable[[str], bool],
    mailbox: str | None = None,
) -> Action | None:
    """What the lists say of a message to RECIPIENT (whose user is MAILBOX) naming SENDERS (its envelope sender
    and From address): "block" when they block any of them; "allow" when they allow one that VOUCHED(address)
    says our checks authenticated; else None, and the message is scored. A name our checks do not vouch for is
    judged by the block rules alone: an allow rule for a name anyone may forge would let anyone skip the spam
    filters, or the block of a broader pattern or list (friend@evil.example's allow taking it out of a block
    of evil.example)."""
    found = list(found)
    said: list[Action | None] = []
    for sender in senders:
        if not sender:
            continue
        action = decide(found, recipient, sender, mailbox)
        if action == "allow" and not vouched(sender):
            action = decide([r for r in found if r.action == "block"], recipient, sender, mailbox)
        said.append(action)
    if "block" in said:
        return "block"
    return "allow" if "allow" in said else None


def _names(sender: str) -> list[str]:
    """What a pattern may be to name SENDER, the most particular first: the address, its domain, each parent."""
    labels = sender.rpartition("@")[2].split(".")
    return [sender, *(".".join(labels[at:]) for at in range(len(labels) - 1))]
