"""Our names as the world's resolvers answer them: the host name's A/AAAA and each domain's MX must lead to
the address we are at. In the story DNS kept the old address after a power cut; this is that failure seen
the way strangers see it (the ddns check asks the authoritative servers; this asks public resolvers, whose
caches are what strangers get)."""

from __future__ import annotations

import dns.asyncresolver
import dns.exception
import dns.resolver

from jitaku.config import Settings
from jitaku.health.result import Result, State
from jitaku.resolver import Nameserver

TIMEOUT = 5.0


class Unanswered(Exception):
    pass


def _resolver(server: Nameserver) -> dns.asyncresolver.Resolver:
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [server.address]
    resolver.port = server.port
    resolver.lifetime = TIMEOUT
    return resolver


async def _answer(resolver: dns.asyncresolver.Resolver, name: str, kind: str) -> list[str]:
    try:
        return sorted(str(record).rstrip(".").lower() for record in await resolver.resolve(name, kind))
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.DNSException as error:
        raise Unanswered(f"{kind} {name}: {error.__class__.__name__}") from None


async def _look(settings: Settings, server: Nameserver, ours: dict[str, str]) -> list[tuple[str, str]]:
    """What is wrong as SERVER sees it, in English and in Japanese; empty when all is right."""
    resolver = _resolver(server)
    hostname = settings.mail_hostname
    wrong = []
    for kind, address in ours.items():
        seen = await _answer(resolver, hostname, kind)
        if address not in seen:
            wrong.append(
                (
                    f"{server.address} answers {kind} {hostname} = {', '.join(seen) or 'nothing'}, not {address}",
                    f"{server.address} の答えは {kind} {hostname} = {'、'.join(seen) or 'なし'} ですが、"
                    f"正しくは {address} です",
                )
            )
    for domain in settings.domains:
        exchanges = [record.split()[-1] for record in await _answer(resolver, domain, "MX")]
        if hostname in exchanges:
            continue
        reaching = [name for name in exchanges if await _leads_to_us(resolver, name, ours)]
        if not reaching:
            shown = ", ".join(exchanges) or "nothing"
            wrong.append(
                (
                    f"{server.address} answers MX {domain} = {shown}, which does not lead to us",
                    f"{server.address} の答えは MX {domain} = {'、'.join(exchanges) or 'なし'} で、"
                    "このサーバーにつながりません",
                )
            )
    return wrong


async def _leads_to_us(resolver: dns.asyncresolver.Resolver, name: str, ours: dict[str, str]) -> bool:
    """An MX host of another name is fine when it has our address (a second name for this server)."""
    for kind, address in ours.items():
        if address in await _answer(resolver, name, kind):
            return True
    return False


def public_addresses(states: list[tuple[int, str | None]]) -> dict[str, str]:
    """Our addresses by record type, from the DDNS updater's last look: [(family, address)]."""
    return {("A" if family == 4 else "AAAA"): address for family, address in states if address}


async def check(settings: Settings, ours: dict[str, str]) -> Result | None:
    resolvers = settings.health.dns.resolvers
    if not resolvers:
        return None
    if not ours:
        return Result(
            "dns",
            State.WARNING,
            "our public address is not known yet (see `jitaku ddns status`).",
            ja="このサーバーのグローバルアドレスがまだ分かりません（`jitaku ddns status` を参照）。",
        )
    wrong: list[tuple[str, str]] = []
    unanswered: list[tuple[str, str]] = []
    for server in resolvers:
        try:
            wrong.extend(await _look(settings, server, ours))
        except Unanswered as error:
            unanswered.append(
                (f"{server.address} did not answer {error}", f"{server.address} が応答しません（{error}）")
            )
    metrics = {"wrong": float(len(wrong)), "resolvers": float(len(resolvers))}
    if wrong:
        sentences = [sentence for sentence, _ja in wrong]
        return Result(
            "dns",
            State.CRITICAL,
            "; ".join(sentences) + ".",
            metrics,
            detail="; ".join(sorted(sentences)),
            ja="".join(f"{ja}。" for _sentence, ja in wrong),
        )
    if len(unanswered) == len(resolvers):
        return Result(
            "dns",
            State.WARNING,
            "; ".join(sentence for sentence, _ja in unanswered) + ".",
            metrics,
            ja="".join(f"{ja}。" for _sentence, ja in unanswered),
        )
    shown = ", ".join(f"{kind} {address}" for kind, address in sorted(ours.items()))
    shown_ja = "、".join(f"{kind} {address}" for kind, address in sorted(ours.items()))
    return Result(
        "dns",
        State.OK,
        f"public resolvers lead {settings.mail_hostname} to us ({shown}).",
        metrics,
        ja=f"公開リゾルバで {settings.mail_hostname} はこのサーバー（{shown_ja}）を指しています。",
    )
