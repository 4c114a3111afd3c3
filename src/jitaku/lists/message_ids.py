"""A post's Message-ID, the posts it answers, and the stable address of its archive page.

The page is named by HyperKitty's hash of the Message-ID (the one Mailman 3 puts in Archived-At and
Message-ID-Hash): base32 of the SHA-1 of the Message-ID without its angle brackets. A post without a Message-ID
gets one the list makes, so that every copy and the archive name it alike.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from urllib.parse import quote

from jitaku.mail.headers import field_name, field_value

_ID = re.compile(r"<([!-;=?-~]{1,998})>")  # printable ASCII but the brackets
_BARE = re.compile(r"[!-;=?-~]{1,998}")
MAX_REFERENCES = 50  # the nearest ones; a thread's first post is rarely further up than that


def message_id(fields: list[bytes]) -> str | None:
    """The first Message-ID field's id, without its angle brackets; None when there is none (or it is empty)."""
    for field in fields:
        if field_name(field) == "message-id":
            value = field_value(field)
            found = _ID.search(value)
            if found:
                return found.group(1)
            bare = value.strip()
            return bare if _BARE.fullmatch(bare) else None
    return None


def new_message_id(domain: str) -> str:
    return f"{secrets.token_hex(16)}@{domain}"


def answers(fields: list[bytes]) -> list[str]:
    """The Message-IDs the post answers, nearest first: In-Reply-To (RFC 5322 §3.6.4), then References from its
    last id back, as mail programs that write only one of them thread."""
    in_reply_to: list[str] = []
    references: list[str] = []
    for field in fields:
        name = field_name(field)
        if name == "in-reply-to":
            in_reply_to += _ID.findall(field_value(field))
        elif name == "references":
            references += _ID.findall(field_value(field))
    return list(dict.fromkeys(in_reply_to + references[::-1][:MAX_REFERENCES]))


def message_hash(identifier: str) -> str:
    """HyperKitty's name for the message: what Mailman 3's Archived-At and X-Message-ID-Hash carry."""
    octets = identifier.strip().removeprefix("<").removesuffix(">").encode("utf-8", "surrogateescape")
    return base64.b32encode(hashlib.sha1(octets).digest()).decode("ascii")


def archive_url(web_url: str, list_address: str) -> str:
    return f"{web_url}/lists/{quote(list_address, safe='@')}/archive/"


def message_url(web_url: str, list_address: str, hashed: str) -> str:
    return f"{archive_url(web_url, list_address)}msg/{hashed}/"
