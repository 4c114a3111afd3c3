"""Commands mailed to LIST-request@: Mailman's words and fml's `# word` spellings.

People write these by hand from any mailer, so the reading is forgiving about
form (case, full-width characters, `Re:`, quoting, signatures, MIME encodings)
and strict about content: a line is a command only when it is nothing but a
command. "unsubscribe other@example.com" is not read as "unsubscribe me".
"""

from __future__ import annotations

import email
import re
import unicodedata
from dataclasses import dataclass
from email.message import Message

from jitaku.mail.headers import decoded

# A letter, not a command list, is what follows this many lines; stop reading there.
MAX_LINES = 20

_VERBS = {
    "subscribe": "subscribe",
    "join": "subscribe",
    "unsubscribe": "unsubscribe",
    "leave": "unsubscribe",
    "bye": "unsubscribe",
    "help": "help",
    "members": "members",
    "who": "members",
}
_COMMAND = re.compile(
    r"#?\s*(?:(?P<verb>" + "|".join(_VERBS) + r")|get\s+(?P<number>[0-9]{1,9})|confirm\s+(?P<token>[!-~]{1,128}))",
    re.IGNORECASE,
)
# "Re:", "Re[2]:", "Re^2:", "Fwd:", German "AW:", Nordic "SV:", Japanese 返信/転送 (full-width colon is NFKC'd).
_REPLY_PREFIX = re.compile(r"^(?:(?:re|fwd?|aw|sv|返信|転送)(?:\[[0-9]+\]|\^[0-9]+)?\s*:\s*)+", re.IGNORECASE)
# Windows mailers label cp932 as Shift_JIS; old ones say x-sjis, which Python does not know.
_CHARSETS = {"shift_jis": "cp932", "x-sjis": "cp932"}


@dataclass(frozen=True)
class Command:
    verb: str  # "subscribe" | "unsubscribe" | "help" | "members" | "get" | "confirm"
    argument: str | None  # the N of "get N", the token of "confirm TOKEN"


def parse(message: bytes) -> list[Command]:
    """The commands in the Subject, then in the first text/plain part, each once, in order."""
    parsed = email.message_from_bytes(message)
    found: list[Command] = []
    subject = _command(_REPLY_PREFIX.sub("", _normal(_subject(parsed))))
    if subject:
        found.append(subject)
    read = 0
    for raw in _body(parsed).splitlines():
        line = _normal(raw)
        if line.startswith("--") or read == MAX_LINES:
            break
        if not line:
            continue
        read += 1
        command = _command(line)  # also None for a quoted "> subscribe": the pattern allows no ">"
        if command:
            found.append(command)
    return list(dict.fromkeys(found))


def _subject(message: Message) -> str:
    """The Subject as text: encoded-words decoded, raw 8-bit taken as UTF-8 (RFC 6532)."""
    for name, value in message.raw_items():
        if name.lower() == "subject":
            return decoded(value.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
    return ""


def _normal(text: str) -> str:
    """Full-width letters, digits, `＃` and spaces become their ASCII selves (NFKC)."""
    return unicodedata.normalize("NFKC", text).strip()


def _command(line: str) -> Command | None:
    match = _COMMAND.fullmatch(line)
    if not match:
        return None
    if match["verb"]:
        return Command(_VERBS[match["verb"].lower()], None)
    if match["number"]:
        return Command("get", str(int(match["number"])))
    return Command("confirm", match["token"])


def _body(message: Message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain" and part.get_content_disposition() != "attachment":
            return _text(part)
    return ""


def _text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset()
    if charset in (None, "us-ascii") and b"\x1b$" in payload:
        # Unlabelled JIS: what Japanese mailers sent before MIME was everywhere.
        charset = "iso-2022-jp"
    charset = _CHARSETS.get(charset or "us-ascii", charset or "us-ascii")
    try:
        return payload.decode(charset, "replace")
    except LookupError:
        return payload.decode("utf-8", "replace")
