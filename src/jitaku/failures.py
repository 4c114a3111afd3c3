"""What went wrong on the network, said as a person would: the sentences `queue list`, a bounce and
`jitaku check` show instead of Python's words.

`queue list` said `[Errno 111] Connect call failed ('203.0.113.25', 25)` and `MX lookup for example.net
failed: LifetimeTimeout` (issue 17). These say "connection refused by mx.example.net (203.0.113.25, port
25)" and "DNS did not answer in time for example.net MX"; the log keeps the exception itself (`detail`).
"""

from __future__ import annotations

import errno
import ssl

import aiosmtplib
import dns.exception
import dns.resolver

# What the kernel means by the errors a connection meets, for those a person can act on.
_ERRNO = {
    errno.ECONNREFUSED: "connection refused by {peer}",
    errno.ENETUNREACH: "no route to {peer}: the network is unreachable from here",
    errno.EHOSTUNREACH: "no route to {peer}: the host is unreachable",
    errno.EADDRNOTAVAIL: "cannot reach {peer}: this host has no address to reach it from",
    errno.ECONNRESET: "{peer} broke off the connection",
    errno.ECONNABORTED: "{peer} broke off the connection",
    errno.EPIPE: "{peer} broke off the connection",
    errno.EACCES: "not allowed to connect to {peer} (a firewall on this host?)",
    errno.EPERM: "not allowed to connect to {peer} (a firewall on this host?)",
}


def peer(host: str, address: str | None = None, port: int | None = None) -> str:
    """How a server is named in a sentence: "mx.example.net (203.0.113.25, port 25)"."""
    where = [part for part in (address if address != host else None, f"port {port}" if port else None) if part]
    return f"{host} ({', '.join(where)})" if where else host


def network(error: BaseException, who: str, timeout: float) -> str:
    """What ERROR, met connecting to or talking with WHO (see `peer`) with TIMEOUT seconds to answer, means."""
    # aiosmtplib wraps what the socket or TLS said ("Error connecting to ...: [Errno 111] ..."): say that
    while isinstance(error, aiosmtplib.SMTPException) and isinstance(error.__cause__, OSError):
        error = error.__cause__
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"the TLS certificate of {who} was not accepted: {error.verify_message or error.reason}"
    if isinstance(error, ssl.SSLError):
        reason = (error.reason or error.__class__.__name__).replace("_", " ").lower()
        return f"TLS with {who} failed: {reason}"
    if isinstance(error, TimeoutError):  # asyncio's too, and aiosmtplib's SMTPTimeoutError
        return f"no answer from {who} within {timeout:g} s"
    if isinstance(error, aiosmtplib.SMTPServerDisconnected):
        return f"{who} closed the connection"
    if isinstance(error, OSError) and error.errno in _ERRNO:
        return _ERRNO[error.errno].format(peer=who)
    if isinstance(error, OSError) and error.strerror:
        return f"{who}: {error.strerror[0].lower()}{error.strerror[1:]}"
    if isinstance(error, aiosmtplib.SMTPException) and error.message:
        return f"{who}: {error.message}"
    return f"{who}: {error or error.__class__.__name__}"


def lookup(error: dns.exception.DNSException, name: str, rdtype: str) -> str:
    """What ERROR, from asking DNS for NAME's RDTYPE records, means."""
    if isinstance(error, dns.resolver.NXDOMAIN):
        return f"{name} does not exist in DNS"
    if isinstance(error, dns.resolver.NoAnswer):
        return f"DNS has no {rdtype} record for {name}"
    if isinstance(error, dns.exception.Timeout):  # LifetimeTimeout: every server tried, none in time
        return f"DNS did not answer in time for {name} {rdtype}"
    if isinstance(error, dns.resolver.NoNameservers):  # each one answered SERVFAIL or REFUSED, or was unreachable
        return f"the DNS servers failed to answer for {name} {rdtype}"
    return f"DNS lookup of {name} {rdtype} failed"


def detail(error: BaseException) -> str:
    """The exception itself, for the log: what a sentence leaves out (the errno, the library's words)."""
    cause = error.__cause__
    return f"{error!r} from {cause!r}" if cause is not None else repr(error)
