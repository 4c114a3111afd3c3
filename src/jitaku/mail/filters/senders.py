"""Whom a stranger's message names as its sender, and which of those names our own checks vouch for, for the
allow and block lists (issue 23). Anyone may write MAIL FROM:<friend@bank.example> or that From line, so an
allow rule counts only for a name that is authenticated, as SpamAssassin's whitelist_auth: the envelope sender
whose domain passed SPF, the From address whose domain passed DMARC or carries an aligned DKIM pass. A block
rule counts for any name: blocking a forged one costs the real sender nothing it had."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import cached_property

from jitaku.domains import organizational_domain
from jitaku.mail import headers

# A header section up to this is read on the event loop: the stdlib parser takes ~0.2 ms for a few KiB of it,
# ~1 ms for 16 KiB, more than a hand-off to a thread costs; beyond, up to `[smtp] max_header_size` (256 KiB:
# ~12 ms) would stall every other session.
ON_LOOP_BYTES = 16 * 1024


@dataclass(frozen=True)
class Senders:
    """ENVELOPE (MAIL FROM, "" for the null sender) and the From field's one address ("" when it has none or
    several), lowercased, with our Authentication-Results line RESULTS for the message (b"" when not checked)."""

    envelope: str
    from_address: str
    results: bytes

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(name for name in (self.envelope, self.from_address) if name))

    def vouched(self, address: str) -> bool:
        """Whether our checks say ADDRESS, one of NAMES, is not forged (read only when a list allows it)."""
        passed = self._passed
        domain = address.rpartition("@")[2]
        if address == self.envelope and ("spf", domain) in passed:
            return True
        if address != self.from_address:
            return False
        aligned = organizational_domain(domain)
        return ("dmarc", domain) in passed or any(
            method == "dkim" and organizational_domain(signer) == aligned for method, signer in passed
        )

    @cached_property
    def _passed(self) -> set[tuple[str, str]]:
        return _passed(self.results)


async def read(envelope: str, message: bytes, results: bytes) -> Senders:
    """`of`, in a thread when MESSAGE's header section is long."""
    if message.find(b"\r\n\r\n", 0, ON_LOOP_BYTES) >= 0:
        return of(envelope, message, results)
    return await asyncio.to_thread(of, envelope, message, results)


def of(envelope: str, message: bytes, results: bytes) -> Senders:
    """The names MESSAGE (as it arrived, its header fields first) gives its sender."""
    found = headers.from_addresses(message)
    return Senders(envelope.lower(), found[0].lower() if len(found) == 1 else "", results)


def _passed(results: bytes) -> set[tuple[str, str]]:
    """(method, domain) for each of spf, dkim and dmarc that passed in RESULTS: SPF's for the MAIL FROM's
    domain, DKIM's for the signing domain (header.d), DMARC's for the From domain. Read with authres' parser,
    not a pattern: a stranger chose the quoted values and comments among them ("dmarc=pass" in a local part)."""
    if not results:
        return set()
    from authres import AuthenticationResultsHeader  # authcheck has it loaded already when Check ran

    try:
        parsed = AuthenticationResultsHeader.parse(results.decode("utf-8", "replace").strip())
    except Exception:  # our own line, so not expected; unparsed is nothing vouched for, never a crash
        return set()
    wanted = {"spf": ("smtp", "mailfrom"), "dkim": ("header", "d"), "dmarc": ("header", "from")}
    passed = set()
    for result in parsed.results:
        if result.method not in wanted or result.result != "pass":
            continue
        for prop in result.properties:
            if (prop.type, prop.name) == wanted[result.method]:
                passed.add((result.method, str(prop.value).rpartition("@")[2].lower().rstrip(".")))
    return passed
