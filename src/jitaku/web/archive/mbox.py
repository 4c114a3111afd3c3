"""A month of a list's posts as one mbox file (mboxrd: a body line that starts with ">*From " gets one more ">",
so reading it back restores every line), in the form mail programs and Python's `mailbox` read."""

from __future__ import annotations

import re
import time

_FROM_LINE = re.compile(rb"^(>*From )", re.MULTILINE)
CONTENT_TYPE = "application/mbox"  # RFC 4155


def entry(sender: str, posted_at: float, body: bytes) -> bytes:
    """One post: its "From " line (envelope sender, UTC time), the message with LF line ends, quoted, and the
    blank line that ends it."""
    who = sender if sender and not any(c.isspace() for c in sender) else "MAILER-DAEMON"
    text = _FROM_LINE.sub(rb">\1", body.replace(b"\r\n", b"\n"))
    if not text.endswith(b"\n"):
        text += b"\n"
    return f"From {who} {time.asctime(time.gmtime(posted_at))}\n".encode("ascii", "replace") + text + b"\n"
