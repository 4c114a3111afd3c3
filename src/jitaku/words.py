"""How counts and truth values read in English, the same in every command, sentence and alert.

"1 minutes" and "1 messages" were printed (issue 17); a table said `True` where the next one said `on`.
"""

from __future__ import annotations


def counted(number: float, noun: str, plural: str | None = None) -> str:
    """NUMBER and NOUN, in the plural unless it is one: "1 minute", "2 minutes", "0 messages", "1,234 hours".

    A fraction is rounded as it is shown, and the noun agrees with what is shown: 0.7 hours reads "1 hour".
    PLURAL: for a noun that does not just take an s ("copy", "copies")."""
    shown = f"{number:,.0f}" if isinstance(number, float) else f"{number:,}"
    return f"{shown} {noun if shown == '1' else plural or noun + 's'}"


def yes_no(value: bool) -> str:
    """One word for a setting that is on or off, everywhere the CLI shows one."""
    return "yes" if value else "no"
