"""LIST and LSUB responses (RFC 3501 §6.3.8-9, LIST-EXTENDED RFC 5258, LIST-STATUS RFC 5819, SPECIAL-USE
RFC 6154) for one user's mailboxes and subscriptions, and STATUS lines.

LIST lists mailboxes; LSUB and LIST (SUBSCRIBED) list subscribed names, a mailbox's or not (a subscription
outlives its mailbox, RFC 3501 §6.3.6): LIST-EXTENDED calls such a name \\NonExistent. Time grows linearly
with the mailboxes and subscriptions (and the levels of their names), both bounded by [imap] max_mailboxes:
what each name has below it is gathered in one pass over the names, not looked for again for each name
listed (issue 15: 10,000 mailboxes made one LIST quadratic and froze the daemon). Over many names it runs
in a worker thread and checks its budget as it goes.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from jitaku.mail.imap import structure, utf7
from jitaku.mail.imap.budget import Budget
from jitaku.mail.imap.parser import ListMailboxes
from jitaku.mail.imap.pattern import DELIMITER, Pattern
from jitaku.store.mailstore import INBOX, Folder, MailboxInfo

NAMES_PER_CHECK = 256  # names looked at between two looks at the budget


def responses(
    command: ListMailboxes, boxes: Sequence[Folder | MailboxInfo], subscribed: set[str], budget: Budget
) -> list[str]:
    """The untagged responses to COMMAND over BOXES and the SUBSCRIBED names. BOXES are MailboxInfo (their
    numbers) when COMMAND asks for STATUS."""
    verb = "LSUB" if command.lsub else "LIST"
    if command.patterns == ("",):  # the hierarchy delimiter (RFC 3501 §6.3.8)
        return [f'* {verb} (\\Noselect) "/" ""']
    patterns = [Pattern(command.reference + pattern) for pattern in command.patterns]

    def any_wanted(name: str) -> bool:
        return any(pattern.matches(name) for pattern in patterns)

    wanted = patterns[0].matches if len(patterns) == 1 else any_wanted  # one pattern: what clients send

    by_name = {box.name: box for box in boxes}
    with_children: set[str] = set()  # names with a mailbox below them
    with_subscribed: set[str] = set()  # ... with a subscribed name below them
    with_unreached: set[str] = set()  # ... with a subscribed name below them that no pattern matches
    # RFC 3501 §6.3.9 and RFC 5258 §3: a level above subscribed names the patterns do not reach is listed
    reach_below = command.subscribed_only and (command.lsub or command.recursive)
    for count, box in enumerate(boxes):
        if count % NAMES_PER_CHECK == 0:
            budget.check()
        with_children.update(_levels_above(box.name))
    for count, name in enumerate(subscribed):
        if count % NAMES_PER_CHECK == 0:
            budget.check()
        above = _levels_above(name)
        with_subscribed.update(above)
        if reach_below and not wanted(name):
            with_unreached.update(above)
    # the levels above what is listed are listed too, with no mailbox of their own if they have none
    names = subscribed | with_unreached if command.subscribed_only else with_children.union(by_name)
    lines = []
    for count, name in enumerate(sorted(names, key=lambda name: (name != INBOX, name))):
        if count % NAMES_PER_CHECK == 0:
            budget.check()
        if not wanted(name):
            continue
        listed = by_name.get(name)
        if command.special_use_only and (listed is None or not listed.special_use):
            continue
        lines.append(
            _listed(command, verb, name, listed, name in subscribed, name in with_children, name in with_subscribed)
        )
        for option in command.return_options:
            if option.startswith("STATUS ") and isinstance(listed, MailboxInfo):
                lines.append(_box_status_line(listed, tuple(option.split()[1:])))
    return lines


def _levels_above(name: str) -> list[str]:
    """The levels above NAME: "a" and "a/b" above "a/b/c"."""
    if DELIMITER not in name:  # most names, INBOX and the special-use folders among them
        return []
    levels = name.split(DELIMITER)
    return [DELIMITER.join(levels[:depth]) for depth in range(1, len(levels))]


def _listed(
    command: ListMailboxes,
    verb: str,
    name: str,
    box: Folder | MailboxInfo | None,
    subscribed: bool,
    children: bool,
    subscribed_below: bool,
) -> str:
    """One LIST or LSUB response: the name's attributes, and CHILDINFO for RECURSIVEMATCH."""
    attributes = []
    if command.lsub:
        if not subscribed:
            attributes.append("\\Noselect")  # LSUB's word for "not subscribed itself"; a subscription needs no mailbox
    else:
        if box is None:  # a level, or a subscription, with no mailbox
            attributes.append("\\NonExistent" if command.extended else "\\Noselect")
        attributes.append("\\HasChildren" if children else "\\HasNoChildren")
        if box is not None and box.special_use:
            attributes.append(box.special_use)
        if subscribed and (command.subscribed_only or "SUBSCRIBED" in command.return_options):
            attributes.append("\\Subscribed")
    childinfo = command.recursive and command.subscribed_only and subscribed_below
    extra = ' (CHILDINFO ("SUBSCRIBED"))' if childinfo else ""
    return f'* {verb} ({" ".join(attributes)}) "/" {quoted_name(name)}{extra}'


@functools.lru_cache(maxsize=4096)
def quoted_name(mailbox: str) -> str:
    """A mailbox name as LIST and STATUS send it: modified UTF-7, quoted. Kept: the same few names go out
    with every LIST and STATUS, and encoding one took as long as the rest of its LIST line."""
    return structure.string(utf7.encode(mailbox)).decode()


def status_line(name: str, items: tuple[str, ...], values: Sequence[int]) -> str:
    """A STATUS response: each of ITEMS with its value in VALUES."""
    listed = " ".join(f"{item} {value}" for item, value in zip(items, values, strict=True))
    return f"* STATUS {quoted_name(name)} ({listed})"


def _box_status_line(box: MailboxInfo, items: tuple[str, ...]) -> str:
    values = {
        "MESSAGES": box.messages,
        "RECENT": box.recent,
        "UIDNEXT": box.uidnext,
        "UIDVALIDITY": box.uidvalidity,
        "UNSEEN": box.unseen,
        "HIGHESTMODSEQ": box.highestmodseq,
        "SIZE": box.size,
        "DELETED": box.deleted,
    }
    return status_line(box.name, items, [values[item] for item in items])
