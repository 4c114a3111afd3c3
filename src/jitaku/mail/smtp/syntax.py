"""The grammar of MAIL and RCPT arguments (RFC 5321 §4.1.2, with RFC 6531's UTF-8), read strictly: a path
without its angle brackets, or with a space or a stray bracket in it, is a syntax error, not a guess.

What was read is remembered (a path is at most a command line long): the same senders and recipients come
again and again, and matching the grammar's regex was a fiftieth of a message's CPU on the MX.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from jitaku.memo import small_inputs_cache

# RFC 5322 atext, and any non-ASCII character but lone surrogates (the escapes of bytes that are not UTF-8)
_UTF8 = "\u0080-\ud7ff\ue000-\U0010ffff"
_ATEXT = rf"[A-Za-z0-9!#$%&'*+\-/=?^_`{{|}}~{_UTF8}]"
_DOT_STRING = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_QUOTED = rf'"(?:[\x20\x21\x23-\x5b\x5d-\x7e{_UTF8}]|\\[\x20-\x7e])*"'
_LET_DIG = rf"[A-Za-z0-9{_UTF8}]"
_SUB_DOMAIN = rf"{_LET_DIG}(?:[A-Za-z0-9\-{_UTF8}]*{_LET_DIG})?"
_DOMAIN = rf"{_SUB_DOMAIN}(?:\.{_SUB_DOMAIN})*"
_LITERAL = r"\[[\x21-\x5a\x5e-\x7e]+\]"  # IPv4, "IPv6:..." or a general literal: dcontent
_MAILBOX = rf"(?:{_DOT_STRING}|{_QUOTED})@(?:{_DOMAIN}|{_LITERAL})"
_ROUTE = rf"@{_DOMAIN}(?:,@{_DOMAIN})*:"
_PATH = re.compile(rf"<(?:{_ROUTE})?({_MAILBOX})>")
# Something in brackets with an "@": not a mailbox, but the policy's to refuse (an MX hears relay tricks)
_BRACKETED = re.compile(r"<([^<>\s]*@[^<>\s]*)>")
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_VALUE = re.compile(r"[\x21-\x3c\x3e-\x7e]+")  # RFC 5321 esmtp-value: no "=", no space, no control
_REMEMBERED = 600  # characters of an argument whose reading is remembered: a MAIL line's, parameters and all


class BadPath(ValueError):
    """The argument is not a path."""


class BadParameters(ValueError):
    """The parameters after the path are not keyword[=value] pairs."""


@dataclass(frozen=True, slots=True)
class Path:
    mailbox: str  # "" for the null path <>
    # keywords upper-cased; read-only, since one Path is remembered for every session that sends its text
    parameters: Mapping[str, str | None]


def _parameters(rest: str) -> Mapping[str, str | None]:
    if rest and not rest.startswith(" "):
        raise BadPath(rest)
    found: dict[str, str | None] = {}
    for item in rest.split():
        keyword, equals, value = item.partition("=")
        if not _KEYWORD.fullmatch(keyword) or (equals and not _VALUE.fullmatch(value)):
            raise BadParameters(item)
        found[keyword.upper()] = value if equals else None
    return MappingProxyType(found)


@small_inputs_cache(maxsize=1024, max_chars=_REMEMBERED)
def reverse_path(text: str) -> Path:
    """MAIL FROM's argument after the colon: <> or a path; a source route is dropped (RFC 5321 §4.1.1.2)."""
    text = text.lstrip(" ")
    if text.startswith("<>"):
        return Path("", _parameters(text[2:]))
    match = _PATH.match(text)
    if match is None:
        raise BadPath(text)
    return Path(match.group(1), _parameters(text[match.end() :]))


@small_inputs_cache(maxsize=1024, max_chars=_REMEMBERED)
def forward_path(text: str) -> Path:
    """RCPT TO's argument after the colon. <postmaster> (RFC 5321 §4.1.1.3) comes back as "postmaster"; a
    bracketed token with an "@" that is no mailbox comes back as it is, for the policy to refuse in its words
    (on the MX: a relay attempt)."""
    text = text.lstrip(" ")
    if text[:12].lower() == "<postmaster>":
        return Path("postmaster", _parameters(text[12:]))
    match = _PATH.match(text) or _BRACKETED.match(text)
    if match is None:
        raise BadPath(text)
    return Path(match.group(1), _parameters(text[match.end() :]))
