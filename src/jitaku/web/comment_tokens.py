"""The comment form's token and the owner's moderation links, signed with the site's key (web.secret in the
data dir, the one that signs admin sessions, under labels of their own so that no signature of one kind
passes for another).

Post pages are cached and shared by every reader, so a reader's token cannot be in the page: it is a cookie,
set with every post page, holding when it was issued and a random nonce. SameSite=Strict keeps it off a
cross-site POST, which makes it the form's CSRF guard too; the nonce, stored with the comment (unique), makes
a replayed form store nothing; the time refuses a form sent faster than a person writes (a bot's) or one left
open for more than a day."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from jitaku.web.comment_words import ENGLISH

COOKIE = "jitaku_comment"
MIN_SECONDS = 2.0  # the contract: at most 3 s
MAX_SECONDS = 86400.0
LINK_SECONDS = 14 * 86400  # how long the approve and spam links of a notification work
_FORM = b"comment-form\0"
_MODERATE = b"comment-moderate\0"
# ASCII digits, few enough for SQLite's integer: str.isdigit() takes "²", which int() refuses
_NUMBER = re.compile(r"[0-9]{1,18}")


class TokenRefused(Exception):
    """Why a form's token does not do: KEY names the sentence said to the reader (web/comment_words.py)."""

    def __init__(self, key: str) -> None:
        super().__init__(ENGLISH[key])
        self.key = key


class CommentTokens:
    """The form's tokens and the moderation links, both signed with one key: kept together so that the labels
    that keep one kind of signature from passing for the other live in one place."""

    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    def _sign(self, label: bytes, text: str) -> str:
        digest = hmac.new(self._key, label + text.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def issue(self, now: float) -> str:
        """A new token: issued NOW (in milliseconds, so that MIN_SECONDS is the least age, not up to a second
        more), with a nonce of its own."""
        text = f"{int(now * 1000)}.{secrets.token_urlsafe(16)}"
        return f"{text}.{self._sign(_FORM, text)}"

    def cookie(self, now: float, secure: bool = False) -> str:
        """The Set-Cookie header's value that gives a reader a new token: for every response of a post page.
        SECURE: the request came over HTTPS, so the browser is never to send it over plain HTTP."""
        attributes = f"HttpOnly; SameSite=Strict; Path=/; Max-Age={int(MAX_SECONDS)}"
        return f"{COOKIE}={self.issue(now)}; {attributes}{'; Secure' if secure else ''}"

    def nonce(self, token: str | None, now: float) -> str:
        """TOKEN's nonce, when it is ours and of the right age; TokenRefused saying why not."""
        if not token:
            raise TokenRefused("no_token")
        issued, _, rest = token.partition(".")
        nonce, _, signature = rest.partition(".")
        text = f"{issued}.{nonce}"
        if not (_NUMBER.fullmatch(issued) and nonce and _same(signature, self._sign(_FORM, text))):
            raise TokenRefused("bad_token")
        age = now - int(issued) / 1000
        if age > MAX_SECONDS:
            raise TokenRefused("old_token")
        if age < MIN_SECONDS:
            raise TokenRefused("fast_token")
        return nonce

    def link(self, comment_id: int, action: str, now: float) -> str:
        """The query of a moderation link: ACTION ("approve" or "spam") on COMMENT_ID, for LINK_SECONDS."""
        until = int(now) + LINK_SECONDS
        return f"until={until}&sig={self._sign(_MODERATE, f'{comment_id}.{action}.{until}')}"

    def link_valid(self, comment_id: int, action: str, until: str, signature: str, now: float) -> bool:
        if not _NUMBER.fullmatch(until) or int(until) < now:
            return False
        return _same(signature, self._sign(_MODERATE, f"{comment_id}.{action}.{until}"))


def _same(sent: str, signature: str) -> bool:
    """Whether SENT is SIGNATURE (ASCII), in constant time; compare_digest raises on a str that is not ASCII (a
    cookie or a query holding "é" would be a 500)."""
    return sent.isascii() and hmac.compare_digest(sent, signature)
