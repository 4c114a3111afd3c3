"""The hook where a content filter judges a reader's comment before it is stored, and the one issue 23 plugs in:
the MX's own spam engines (rspamd and SpamAssassin, as `[filters]` turns them on) read the comment as a small
mail message. Whatever it says, the form's own checks (token, honeypot, rate, links) have run first, and the
owner's moderation still applies to what it lets through.

ClamAV is not asked: a comment is a few kilobytes of text that no reader's program runs, and the form has
refused control characters already."""

from __future__ import annotations

import asyncio
import email.utils
import time
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from typing import Literal, Protocol

from jitaku import log
from jitaku.config import FiltersSettings
from jitaku.mail.filters import decision
from jitaku.mail.filters.scanning import Scanning, scanners
from jitaku.mail.filters.verdict import Envelope
from jitaku.mail.filters.verdict import Verdict as EngineVerdict
from jitaku.store import Database
from jitaku.store.comments import NewComment
from jitaku.store.statements import Statements
from jitaku.store.transaction import statements_of

# "ham": moderation decides; "hold": pending whatever moderation; "spam": stored as spam, nobody notified
Verdict = Literal["ham", "spam", "hold"]
MAX_TITLE = 200  # characters of the post's title in the Subject an engine reads


@dataclass(frozen=True)
class Judgement:
    """A filter's VERDICT, and WHY in a few words for the owner's moderation queue ("" for nothing to say)."""

    verdict: Verdict
    why: str = ""


class CommentFilter(Protocol):
    async def verdict(self, comment: NewComment) -> Judgement: ...


class NoFilter:
    """Until a filter is configured: every comment goes on to moderation."""

    async def verdict(self, comment: NewComment) -> Judgement:
        return Judgement("ham")


def from_settings(settings: FiltersSettings, database: Database, hostname: str) -> CommentFilter:
    """The spam engines `[filters]` turns on as the comments' filter; NoFilter when none is."""
    if settings.rspamd is None and settings.spamassassin is None:
        return NoFilter()
    return EngineFilter(settings, database, hostname)


class EngineFilter:
    """rspamd's and SpamAssassin's verdicts on a comment, weighed as decision.py weighs a message's: from
    `reject_score` (or rspamd's "reject") spam, from `junk_score` held with the engine's reason, below that
    moderation decides; an engine that gives no verdict within `[filters] timeout` leaves it to moderation,
    saying so. The engines' clients are made at the first comment: an idle daemon goes without them."""

    def __init__(self, settings: FiltersSettings, database: Database, hostname: str) -> None:
        self._settings = settings
        self._database = database
        self._hostname = hostname
        self._scanning: Scanning | None = None

    async def verdict(self, comment: NewComment) -> Judgement:
        if self._scanning is None:
            spam_only = self._settings.model_copy(update={"clamav": None})
            self._scanning = Scanning(self._settings, scanners(spam_only))
        title = await self._database.query(lambda s: _title(s, comment.post_id), snapshot=False)
        try:
            message = await asyncio.to_thread(as_message, comment, title, self._hostname)
        except Exception as error:  # a name or address the email package will not write: moderation decides
            judged = Judgement("ham", f"not checked (no message could be made of it: {error!r})"[:200])
        else:
            queue_id = f"comment-{comment.nonce[:12]}"
            envelope = Envelope(client=comment.address, helo="", sender=comment.email, recipients=(), queue_id=queue_id)
            verdicts, failures = await self._scanning.run(message, envelope, authenticated=False)
            judged = self._judge(verdicts, [f.engine for f in failures])
        log.event(
            "comment_filtered",
            post=comment.post_id,
            client=comment.address,
            verdict=judged.verdict,
            why=judged.why or None,
        )
        return judged

    def _judge(self, verdicts: list[EngineVerdict], failed: list[str]) -> Judgement:
        not_checked = f"not checked ({', '.join(sorted(set(failed)))} unavailable)" if failed else ""
        if not verdicts:
            return Judgement("ham", not_checked)
        made = decision.decide(self._settings, verdicts, (), ["comment"], lambda _: None)
        outcome = made.outcomes[0]
        if outcome.place == "refused":
            return Judgement("spam", outcome.why)
        if outcome.place == "junk":
            return Judgement("hold", outcome.why)
        return Judgement("ham", not_checked)


def _title(source: Statements, post_id: int) -> str:
    rows = statements_of(source).run("SELECT title FROM posts WHERE id = ?", (post_id,))
    return str(rows[0][0]) if rows else ""


def as_message(comment: NewComment, title: str, hostname: str) -> bytes:
    """The comment as an engine reads mail: From its author, Subject the post's title, its text as UTF-8
    text/plain, and a Received line naming the reader's address (what SpamAssassin checks blocklists by)."""
    message = EmailMessage(policy=SMTP)
    when = email.utils.formatdate(comment.created_at or time.time())
    message["Received"] = f"from [{comment.address}] by {hostname} with HTTP; {when}"
    message["From"] = Address(display_name=_line(comment.author), addr_spec=comment.email or f"comment@{hostname}")
    message["To"] = f"comments@{hostname}"
    message["Subject"] = _line(title)[:MAX_TITLE]
    message["Date"] = when
    message["Message-ID"] = email.utils.make_msgid("comment", hostname)
    message.set_content(comment.body, charset="utf-8")
    return message.as_bytes()


def _line(text: str) -> str:
    return " ".join(text.split())
