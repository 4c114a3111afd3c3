"""Outside text on the way to a terminal: a stranger's subject, a remote server's reply, a From name.

A terminal obeys what it is sent: ESC and C1 CSI (U+009B) start sequences that recolour, retitle the
window, move the cursor or, on some terminals, answer back into the input; BEL rings; CR and BS
overwrite what the line said; the Unicode bidi overrides reorder it ("Trojan Source", CVE-2021-42574).
So every such character is spelled out as a Python escape (`\\x1b`, `\\u202e`), and anything else,
Japanese included, prints as itself.
"""

from __future__ import annotations

import re

# C0 (TAB and LF too: one row of a table is one line), DEL, C1; the bidi embeddings, overrides and
# isolates and the marks (U+061C, U+200E-F); the line and paragraph separators; lone surrogates,
# which an encoder refuses (stdout would raise instead of printing).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _spelled(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """TEXT with every character that would steer a terminal spelled out."""
    return _CONTROL.sub(_spelled, text)
