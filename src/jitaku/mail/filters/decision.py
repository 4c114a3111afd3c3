"""What the engines' verdicts and the allow and block lists make of one message, before the one reply to DATA
(issue 23, CONTRACTS.md "Filters"):

- A virus is refused whoever sent it and whoever it is for: 554 5.7.1 naming the signature, nothing stored.
- An engine that gave no verdict: `[filters] on_error` "accept" delivers with a header saying what was not
  checked; "tempfail" answers 451 4.7.1, and the sender tries again later. Mail is never lost to a dead filter.
- Each recipient's lists first: a blocked sender is refused, an allowed one goes to INBOX unscored (allowed
  only when our checks vouch for the name the rule matched: senders.py), its copy saying
  `X-Spam-Status: No (sender allowed)` whatever the engines scored: a Yes in INBOX would read as our filter's
  mistake, and a client's automatic NonJunk on it would teach the engines that spam as ham (store/training.py).
- Else the spam score, the highest any engine gave (each scores on its own scale; `[filters] reject_score` and
  `junk_score` are read against the one that thinks worst of it): from reject_score refused (550 5.7.1 with the
  engine's short reason), from junk_score to Junk, below to INBOX. An engine's own verdict counts too: rspamd's
  "reject" refuses (GTUBE gets it whatever the score), its "add header" or "rewrite subject" and SpamAssassin's
  "spam" junk.
- One reply for all recipients: refused only when every recipient's outcome is a refusal; otherwise a recipient
  whose outcome was a refusal gets the message in Junk, so that nobody's copy is bounced later.
- Mail from an authenticated user (submission) is scanned for viruses only.
- A message the virus scanner saw only part of (clamd's limits, `[filters.clamav] max_size`) and found nothing in
  is delivered, with X-Virus-Status saying how much was scanned: refusing it would refuse every large attachment.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from jitaku.config import FiltersSettings
from jitaku.mail import headers as fields
from jitaku.mail.filters.verdict import EngineError, Verdict

Place = Literal["inbox", "junk", "refused"]
REFUSING_ACTIONS = frozenset({"reject"})
JUNKING_ACTIONS = frozenset({"add header", "rewrite subject", "spam"})
MAX_SYMBOLS = 40  # in the header that names them: enough to read, never a header of kilobytes
ALLOWED = "sender allowed"  # an outcome's why when an allow rule put the copy in INBOX
# The fields _headers writes, and those SpamAssassin writes that mail programs' rules read as an engine's word
# (X-Spam-Flag: YES, the stars of X-Spam-Level): a sender's own are dropped where ours are written
LOOK_LIKE_OURS = (
    b"x-spam-status",
    b"x-spam-score",
    b"x-spam-symbols",
    b"x-virus-status",
    b"x-spam-flag",
    b"x-spam-level",
)


@dataclass(frozen=True)
class Reply:
    """An SMTP reply: its code, enhanced status code and text."""

    code: int
    status: str
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.status} {self.text}"


@dataclass(frozen=True)
class Outcome:
    """Where one recipient's copy goes, and why (for the log and, when refused, the reply)."""

    recipient: str
    place: Place
    why: str


@dataclass(frozen=True)
class Decision:
    """The message's fate: REFUSED (the one reply to DATA, nothing stored) or each recipient's OUTCOME, with the
    header lines a stored copy carries: ALLOWED_HEADERS on one an allow rule put in INBOX, HEADERS on the others."""

    refused: Reply | None
    outcomes: tuple[Outcome, ...]
    headers: bytes
    allowed_headers: bytes = b""


def decide(
    settings: FiltersSettings,
    verdicts: Sequence[Verdict],
    failures: Sequence[EngineError],
    recipients: Sequence[str],
    listed: Callable[[str], str | None],
    authenticated: bool = False,
) -> Decision:
    """VERDICTS are the engines' answers and FAILURES the engines that gave none; LISTED(recipient) says what the
    allow and block lists say of the sender for that recipient ("allow", "block" or None)."""
    virus = next((v for v in verdicts if v.virus), None)
    if virus is not None:
        return Decision(Reply(554, "5.7.1", f"Message refused: virus {virus.virus} found"), (), b"")
    if failures and settings.on_error == "tempfail":
        names = ", ".join(sorted({f.engine for f in failures}))
        return Decision(Reply(451, "4.7.1", f"Message not checked ({names} unavailable): try again later"), (), b"")
    spam = [v for v in verdicts if v.score is not None or v.action]
    partly = [v for v in verdicts if not v.whole]
    if authenticated:
        outcomes = tuple(Outcome(r, "inbox", "authenticated") for r in recipients)
        return Decision(None, outcomes, _headers([], partly, failures, settings))
    outcomes = tuple(_outcome(settings, spam, r, listed(r)) for r in recipients)
    if outcomes and all(o.place == "refused" for o in outcomes):
        blocked = all(o.why == "sender blocked" for o in outcomes)
        text = "Message refused: sender blocked" if blocked else f"Message refused as spam: {outcomes[0].why}"
        return Decision(Reply(550, "5.7.1", text), outcomes, b"")
    kept = tuple(Outcome(o.recipient, "junk", o.why) if o.place == "refused" else o for o in outcomes)
    allowed = _headers(spam, partly, failures, settings, allowed=True)
    return Decision(None, kept, _headers(spam, partly, failures, settings), allowed)


def _outcome(settings: FiltersSettings, spam: Sequence[Verdict], recipient: str, listed: str | None) -> Outcome:
    if listed == "block":
        return Outcome(recipient, "refused", "sender blocked")
    if listed == "allow":
        return Outcome(recipient, "inbox", ALLOWED)
    refusing = next((v for v in spam if v.action in REFUSING_ACTIONS), None)
    if refusing is not None:
        return Outcome(recipient, "refused", _why(refusing))
    score = _score(spam)
    worst = max(spam, key=lambda v: v.score if v.score is not None else float("-inf"), default=None)
    if score is not None and score >= settings.reject_score and worst is not None:
        return Outcome(recipient, "refused", _why(worst))
    junking = next((v for v in spam if v.action in JUNKING_ACTIONS), None)
    if score is not None and score >= settings.junk_score and worst is not None:
        return Outcome(recipient, "junk", _why(worst))
    if junking is not None:
        return Outcome(recipient, "junk", _why(junking))
    return Outcome(recipient, "inbox", "ham")


def _score(spam: Sequence[Verdict]) -> float | None:
    scores = [v.score for v in spam if v.score is not None]
    return max(scores) if scores else None


def _why(verdict: Verdict) -> str:
    """The engine's short reason, as a reply or header may carry it: printable ASCII, one line, bounded."""
    said = verdict.reason or (f"score {verdict.score:.1f}" if verdict.score is not None else verdict.action)
    text = "".join(c if " " <= c <= "~" else "?" for c in f"{verdict.engine}: {said}")
    return text[:200]


def _headers(
    spam: Sequence[Verdict],
    partly: Sequence[Verdict],
    failures: Sequence[EngineError],
    settings: FiltersSettings,
    allowed: bool = False,
) -> bytes:
    """X-Spam-Status (Yes, No, "No (sender allowed)" for a copy an allow rule put in INBOX (ALLOWED), or Unchecked
    naming the engines that gave no verdict), X-Spam-Score and one header naming the rules that fired, engine by
    engine: what a mail program's own filter rules read. X-Virus-Status only for a message the virus scanner saw
    PARTLY: a clean verdict is no news, and a virus is refused."""
    lines = []
    if partly:
        lines.append(f"X-Virus-Status: Partly scanned ({'; '.join(_why(v) for v in partly)})")
    score = _score(spam)
    if failures:
        names = ", ".join(sorted({f.engine for f in failures}))
        lines.append(f"X-Spam-Status: Unchecked ({names} unavailable)")
    elif spam:
        junk = score is not None and score >= settings.junk_score or any(v.action in JUNKING_ACTIONS for v in spam)
        lines.append(f"X-Spam-Status: {f'No ({ALLOWED})' if allowed else 'Yes' if junk else 'No'}")
    if score is not None:
        lines.append(f"X-Spam-Score: {score:.1f}")
    symbols = [f"{v.engine}={','.join(_token(s) for s in v.symbols[:MAX_SYMBOLS])}" for v in spam if v.symbols]
    if symbols:
        lines.append(_folded("X-Spam-Symbols: " + ";\r\n ".join(symbols)))
    return "".join(line + "\r\n" for line in lines).encode("ascii")


def _folded(field: str, width: int = 78) -> str:
    """FIELD with each line kept near WIDTH by folding after a comma (RFC 5322 §2.2.3): 40 rules of 64 characters
    on one line would pass the 998 a line may have, and a server down the way may refuse the message for it."""
    lines = []
    for line in field.split("\r\n"):
        while len(line) > width:
            at = line.rfind(",", 0, width)
            if at <= 0:
                at = line.find(",", width)  # a rule's name longer than the width: its line ends after it
            if at <= 0 or at == len(line) - 1:
                break
            lines.append(line[: at + 1])
            line = " " + line[at + 1 :]
        lines.append(line)
    return "\r\n".join(lines)


def without_ours(message: bytes) -> bytes:
    """MESSAGE without the X-Spam and X-Virus-Status fields we write (and SpamAssassin's X-Spam-Flag and -Level),
    as a sender may have put them there
    ("X-Spam-Status: No" above a spam, for a mail program's rules to trust): only ours are read. MESSAGE itself
    when it has none."""
    head = fields.header_section(message).lower()
    if b"x-spam-" not in head and b"x-virus-status" not in head:
        return message
    found, body = fields.split_fields(message)
    return b"".join(field for field in found if fields.field_name(field).encode() not in LOOK_LIKE_OURS) + body


def _token(symbol: str) -> str:
    """A rule's name as a header may carry it: no spaces, commas, semicolons or anything but printable ASCII."""
    return "".join(c if "!" <= c <= "~" and c not in ",;" else "_" for c in symbol)[:64]
