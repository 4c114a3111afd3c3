"""Mail the list writes itself: replies to commands, confirmations, and word to its owners."""

from __future__ import annotations

import email
import email.policy
import secrets
from email.message import EmailMessage
from email.utils import format_datetime, localtime

HELP = """\
Commands for {list}, sent to {request} in the subject or one per line of the body:

  subscribe      join the list (you will be asked to confirm)
  unsubscribe    leave the list (also: bye, # bye; you will be asked to confirm)
  confirm TOKEN  confirm a request (replying to the confirmation mail does this)
  get N          have post number N sent to you (also: # get N)
  members        the member list (owners only)
  help           this text (also: # help)
"""


def message(
    sender: str, to: list[str], subject: str, text: str, attachment: bytes | None = None, domain: str = ""
) -> bytes:
    """A plain UTF-8 message marked as automatic (RFC 3834), so vacation programs do not answer it."""
    notice = EmailMessage(policy=email.policy.SMTP)
    notice["From"] = sender
    notice["To"] = ", ".join(to)
    notice["Subject"] = subject
    notice["Date"] = format_datetime(localtime())
    notice["Message-ID"] = f"<{secrets.token_hex(12)}@{domain or sender.rpartition('@')[2]}>"
    notice["Auto-Submitted"] = "auto-replied"
    notice.set_content(text, charset="utf-8", cte="quoted-printable")
    if attachment is not None:
        notice.add_attachment(email.message_from_bytes(attachment, policy=email.policy.SMTP), disposition="inline")
    return notice.as_bytes()
