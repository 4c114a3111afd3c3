"""The hook where a content filter judges a reader's comment before it is stored: the spam-filter issue plugs
rspamd or SpamAssassin in here. Whatever it says, the form's own checks (token, honeypot, rate, links) have
run first, and the owner's moderation still applies to what it lets through."""

from __future__ import annotations

from typing import Literal, Protocol

from jitaku.store.comments import NewComment

# "ham": moderation decides; "hold": pending whatever moderation; "spam": stored as spam, nobody notified
Verdict = Literal["ham", "spam", "hold"]


class CommentFilter(Protocol):
    async def verdict(self, comment: NewComment) -> Verdict: ...


class NoFilter:
    """Until a filter is configured: every comment goes on to moderation."""

    async def verdict(self, comment: NewComment) -> Verdict:
        return "ham"
