"""A post as the list sends it: numbered subject, RFC 2369/2919 headers, the archive's (RFC 2369 List-Archive,
RFC 5064 Archived-At), a DMARC-safe From, wrapped if asked.

Works on the raw header fields so that everything we do not change reaches
members byte for byte (encoded-words, folding, the order of fields).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from email.header import Header
from email.utils import formataddr, getaddresses

from jitaku.domains import organizational_domain
from jitaku.lists import message_ids
from jitaku.lists.subject import strip_tag, tag_subject
from jitaku.mail.headers import Parsed, decoded, field_name, field_value
from jitaku.store.lists import MailingList, Rewrite

# What a list sets itself; a post's own copies of these are dropped.
LIST_FIELDS = frozenset(
    {
        "list-id",
        "list-post",
        "list-help",
        "list-subscribe",
        "list-unsubscribe",
        "list-unsubscribe-post",
        "list-archive",
        "archived-at",  # another list's or archive's would point at theirs
        "list-owner",
        "precedence",
        "x-ml-name",
        "x-mail-count",
        "return-path",
    }
)  # X-Loop stays: another list's X-Loop is what stops two lists that are members of each other
# Fields whose change breaks an original DKIM signature that covers them.
EDITED = LIST_FIELDS | {"subject", "reply-to", "cc", "from", "x-loop"}


@dataclass(frozen=True)
class Edition:
    message: bytes  # what every member gets, before the header lines of their own
    author: str  # decoded, for the archive
    subject: str  # decoded, without our tag
    message_id: str  # the post's own, or the one the list gave it; without angle brackets
    message_hash: str  # its archive page's name (lists/message_ids.py)
    answers: tuple[str, ...]  # the Message-IDs it replies to, nearest first


def first(fields: list[bytes], name: str) -> str | None:
    for field in fields:
        if field_name(field) == name:
            return field_value(field)
    return None


def list_id(mailing_list: MailingList) -> str:
    """RFC 2919: `local.domain` as the list's identifier."""
    return f"{mailing_list.local_part}.{mailing_list.domain}"


def list_fields(mailing_list: MailingList, number: int, web_url: str, message_hash: str | None = None) -> bytes:
    """The list's own fields; with the archive's unless it is "none", and the post's page when MESSAGE_HASH names
    one (a digest has none)."""
    request = mailing_list.role_address("request")
    lines = [
        f"List-Id: {_phrase(mailing_list.name, 'List-Id')} <{list_id(mailing_list)}>",
        f"List-Post: <mailto:{mailing_list.address}>",
        f"List-Help: <mailto:{request}?subject=help>",
        f"List-Subscribe: <mailto:{request}?subject=subscribe>,\r\n <{web_url}/lists/{mailing_list.address}/subscribe>",
        f"List-Owner: <mailto:{mailing_list.role_address('owner')}>",
    ]
    if mailing_list.archive != "none":
        lines.append(f"List-Archive: <{message_ids.archive_url(web_url, mailing_list.address)}>")
        if message_hash is not None:
            lines.append(f"Archived-At: <{message_ids.message_url(web_url, mailing_list.address, message_hash)}>")
    lines += [
        "Precedence: list",
        f"X-ML-Name: {_phrase(mailing_list.name, 'X-ML-Name')}",
        f"X-Mail-Count: {number}",
        f"X-Loop: {mailing_list.address}",
    ]
    return "".join(line + "\r\n" for line in lines).encode("ascii")


def unsubscribe_fields(mailing_list: MailingList, token: str, web_url: str) -> bytes:
    """One member's List-Unsubscribe (RFC 2369) with its one-click URL (RFC 8058)."""
    return (
        f"List-Unsubscribe: <mailto:{mailing_list.role_address('request')}?subject=unsubscribe>,\r\n"
        f" <{web_url}/lists/{mailing_list.address}/unsubscribe/{token}>\r\n"
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    ).encode("ascii")


def compose(post: Parsed, mailing_list: MailingList, number: int, rewrite: Rewrite, web_url: str) -> Edition:
    """REWRITE is "none", "munge" (From becomes the list's) or "wrap" (the post travels as an attachment)."""
    body = post.body
    fields = [_well_formed(field) for field in post.fields if field_name(field)]
    raw_from = first(fields, "from") or ""
    author = decoded(raw_from)
    own_id = message_ids.message_id(fields)
    identifier = own_id or message_ids.new_message_id(mailing_list.domain)
    hashed = message_ids.message_hash(identifier)
    if own_id is None:  # every copy and the archive must name the post alike
        fields = _replace(fields, "message-id", f"Message-ID: <{identifier}>\r\n".encode("ascii"))
    subject = strip_tag(decoded(first(fields, "subject")), mailing_list.subject_tag).strip()
    new_subject = f"Subject: {tag_subject(first(fields, 'subject'), mailing_list.subject_tag, number)}\r\n"
    if rewrite == "wrap":
        fields, body = _wrapper(fields, post.data)
    kept = [f for f in fields if field_name(f) not in LIST_FIELDS]
    kept = _replace(kept, "subject", new_subject.encode("ascii"))
    if rewrite in ("munge", "wrap"):
        kept = _replace(kept, "from", _munged_from(raw_from, mailing_list))
    kept = _reply_fields(kept, raw_from, mailing_list, munged=rewrite != "none")
    head = b"".join(kept) + list_fields(mailing_list, number, web_url, hashed)
    return Edition(head + body, author, subject, identifier, hashed, tuple(message_ids.answers(fields)))


def _well_formed(field: bytes) -> bytes:
    """`Name : value` (RFC 5322's obsolete syntax) as `Name: value`, which DKIM signers can parse."""
    name, _, rest = field.partition(b":")
    stripped = name.rstrip(b" \t")
    return field if stripped == name else stripped + b":" + rest


def _replace(fields: list[bytes], name: str, field: bytes) -> list[bytes]:
    """Put FIELD where the first NAME was (or at the end), dropping any other NAME."""
    out: list[bytes] = []
    placed = False
    for existing in fields:
        if field_name(existing) == name:
            if not placed:
                out.append(field)
                placed = True
            continue
        out.append(existing)
    return out if placed else out + [field]


def _reply_fields(fields: list[bytes], raw_from: str, mailing_list: MailingList, munged: bool) -> list[bytes]:
    """Where replies go. Once From is the list's, the author must still be reachable: in Reply-To,
    or in Cc when Reply-To is the list's."""
    has_reply_to = any(field_name(f) == "reply-to" for f in fields)
    if mailing_list.reply_to == "list":
        fields = _replace(fields, "reply-to", f"Reply-To: <{mailing_list.address}>\r\n".encode())
        if munged and raw_from:
            cc = first(fields, "cc")
            value = f"{cc},\r\n {raw_from}" if cc else raw_from
            fields = _replace(fields, "cc", f"Cc: {value}\r\n".encode("utf-8", "surrogateescape"))
    elif munged and raw_from and not has_reply_to:
        fields = _replace(fields, "reply-to", f"Reply-To: {raw_from}\r\n".encode("utf-8", "surrogateescape"))
    return fields


def _munged_from(raw_from: str, mailing_list: MailingList) -> bytes:
    """`"Original Name via List Name" <list@domain>`, in the author's own charset where it was ISO-2022-JP."""
    pairs = getaddresses([raw_from])
    name, address = pairs[0] if pairs else ("", "")
    display = f"{decoded(name) or address or 'someone'} via {mailing_list.name}"
    if display.isascii():
        return f"From: {formataddr((display, mailing_list.address))}\r\n".encode("ascii")
    charset = "iso-2022-jp" if "iso-2022-jp" in raw_from.lower() and _encodes(display, "iso-2022-jp") else "utf-8"
    encoded = Header(display, charset, header_name="From").encode(linesep="\r\n")
    return f"From: {encoded}\r\n <{mailing_list.address}>\r\n".encode("ascii")


def _phrase(text: str, header_name: str) -> str:
    if text.isascii():
        return formataddr((text, "x@x")).rpartition(" <")[0] if any(c in text for c in '()<>@,;:\\".[]') else text
    return Header(text, "utf-8", header_name=header_name).encode(linesep="\r\n")


def _encodes(text: str, charset: str) -> bool:
    try:
        text.encode(charset)
        return True
    except UnicodeEncodeError:
        return False


# Fields the wrapper keeps from the post: who it is to, threading, and our trace and verdict
_WRAPPER_KEEPS = {
    "received",
    "authentication-results",
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "references",
    "reply-to",
    "x-loop",
}


def _wrapper(fields: list[bytes], post: bytes) -> tuple[list[bytes], bytes]:
    """The post untouched inside a message/rfc822 part, so its DKIM signature still verifies there."""
    boundary = f"jitaku-{secrets.token_hex(12)}"
    kept = [f for f in fields if field_name(f) in _WRAPPER_KEEPS]
    kept += [
        b"MIME-Version: 1.0\r\n",
        f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n'.encode(),
    ]
    original = post.split(b"\r\n", 1)[1] if post.startswith(b"Return-Path:") else post
    body = (
        f"\r\n--{boundary}\r\nContent-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n".encode()
        + original
        + f"\r\n--{boundary}--\r\n".encode()  # that CRLF belongs to the delimiter (RFC 2046 §5.1.1)
    )
    return kept, body


def breaks_signature(fields: list[bytes], from_domain: str) -> bool:
    """Whether the post's header FIELDS have a DKIM signature aligned with FROM_DOMAIN that our edits will
    break."""
    for field in fields:
        if field_name(field) != "dkim-signature":
            continue
        tags = dict(
            (key.strip().lower(), value.strip())
            for key, _, value in (tag.partition("=") for tag in re.sub(r"\s+", "", field_value(field)).split(";"))
        )
        if organizational_domain(tags.get("d", "")) != organizational_domain(from_domain):
            continue
        if {h.lower() for h in tags.get("h", "").split(":")} & EDITED:
            return True
    return False
