"""Word to the owner of each new comment that is not spam, by mail through our own pipeline (signed, queued or
stored like any local submission), with signed links to approve it or mark it spam: the owner moderates from
the phone's mail app. Sent after the comment is committed: a crash between the two loses the mail, never the
comment, which `jitaku blog comments --pending` still lists."""

from __future__ import annotations

from jitaku import log
from jitaku.config import Settings
from jitaku.lists import notices
from jitaku.mail.pipeline import Arrival, Pipeline
from jitaku.mail.policy import Accepted, Policy
from jitaku.store import Database, accounts
from jitaku.store.comments import PUBLISHED, NewComment
from jitaku.web.comment_tokens import CommentTokens


class LocalMail:
    """Mail the daemon writes itself, to anyone (as an authenticated user's would be): through the pipeline."""

    def __init__(self, policy: Policy, pipeline: Pipeline) -> None:
        self._policy = policy
        self._pipeline = pipeline

    async def send(self, sender: str, to: list[str], data: bytes) -> bool:
        """False when none of TO takes mail."""
        decided = [await self._policy.recipient(address, authenticated=True) for address in to]
        accepted = tuple(d for d in decided if isinstance(d, Accepted) and d.list_role is None)
        if not accepted:
            return False
        await self._pipeline.accept(Arrival(sender, accepted, data, session=None))
        return True


class CommentMail:
    def __init__(self, settings: Settings, database: Database, mail: LocalMail, tokens: CommentTokens) -> None:
        self._settings = settings
        self._database = database
        self._mail = mail
        self._tokens = tokens

    async def owner(self) -> str | None:
        """`[blog] notify`, else the first admin."""
        if self._settings.blog.notify:
            return self._settings.blog.notify
        users = await self._database.query(accounts.list_users, snapshot=False)
        return next((user.address for user in users if user.admin), None)

    def text(self, comment: NewComment, comment_id: int, status: str, post_url: str, now: float) -> str:
        site = self._settings.web_url
        state = "is published" if status == PUBLISHED else "waits for your approval"
        lines = [
            f"A new comment on {site}{post_url} {state}.",
            "",
            f"Name:  {comment.author}",
            f"Email: {comment.email}",
            *([f"URL:   {comment.url}"] if comment.url else []),
            f"From:  {comment.address}",
            "",
            comment.body,
            "",
        ]
        for action in ("approve", "spam") if status != PUBLISHED else ("spam",):
            query = self._tokens.link(comment_id, action, now)
            lines.append(f"{action.capitalize() + ':':9}{site}/comments/{comment_id}/{action}?{query}")
        lines.append("")
        lines.append("Each link shows a page with a button; it works for 14 days. Or: jitaku blog comments --pending")
        return "\n".join(lines) + "\n"

    async def send(self, comment: NewComment, comment_id: int, status: str, post_url: str, now: float) -> None:
        """Mail the owner of COMMENT, before the reader has the answer (so that a crash after "saved" does not lose
        the owner's word of it); every failure (finding the owner, composing, the pipeline) is logged here and not
        raised: the comment is committed, and nothing may say otherwise."""
        try:
            to = await self.owner()
            if to is None:
                log.event("comment_not_notified", comment=comment_id, reason="no admin and no [blog] notify")
                return
            sender = f"postmaster@{self._settings.domains[0]}"
            subject = f"Comment by {comment.author} on {post_url}" + ("" if status == PUBLISHED else " (held)")
            data = notices.message(sender, [to], subject, self.text(comment, comment_id, status, post_url, now))
            sent = await self._mail.send(sender, [to], data)
        except Exception as error:
            log.event("comment_not_notified", comment=comment_id, reason=repr(error))
            return
        if not sent:
            log.event("comment_not_notified", comment=comment_id, to=to, reason="address refused")
