"""A member's one-click unsubscribe token (RFC 8058 §3.1): keyed by the list's secret, so only we make them."""

from __future__ import annotations

import hashlib
import hmac

from jitaku.store.lists import MailingList, Member


def one_click_token(mailing_list: MailingList, member: str) -> str:
    """The unguessable part of a member's one-click unsubscribe URL."""
    return hmac.new(mailing_list.key, member.lower().encode(), hashlib.sha256).hexdigest()[:32]


def member_for_token(mailing_list: MailingList, members: list[Member], token: str) -> str | None:
    if not token.isascii():
        return None
    for member in members:
        if hmac.compare_digest(one_click_token(mailing_list, member.address), token):
            return member.address
    return None
