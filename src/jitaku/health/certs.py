"""The certificate our listeners serve: an expired one makes every TLS client refuse us. With ACME on, a failed
renewal is said at once, with when the next try is (jitaku.acme.renewal tries again by itself then)."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from pathlib import Path

import aiosmtplib
from cryptography import x509

from jitaku.acme.lifetime import renew_from
from jitaku.acme.state import Attempts, day, moment
from jitaku.config import CertsCheckSettings, Settings
from jitaku.health.result import Result, State
from jitaku.health.services import TIMEOUT, local, reading_context
from jitaku.tls_reload import RELOAD_EVERY
from jitaku.words import counted

LOADED_WITHIN = 3 * RELOAD_EVERY  # seconds every listener takes to serve a changed tls/cert.pem, and a margin
FAILED = "renewal failed"  # the detail: a renewal that starts failing is news even in a state already alerted


@dataclass(frozen=True)
class Renewals:
    """ACME's side, when it is on: the names it asks for, what its attempts came to (acme/state.json), and how
    many days before its end a certificate is due ([acme] renew_days)."""

    names: tuple[str, ...]
    attempts: Attempts
    renew_days: int = 30

    def failing(self, cert: x509.Certificate, now: float) -> bool:
        """Whether the failures still bear on CERT: not once a certificate newer than the last try is in place (a
        person's, by hand), nor while it is not due (a forced `jitaku cert renew` that failed): the daemon tries
        again only when it is due, so "the next try is at" would name a time nothing happens at."""
        if not self.attempts.failures or cert.not_valid_before_utc.timestamp() > self.attempts.last_try:
            return False
        if cert.issuer == cert.subject or set(self.names) - set(_dns_names(cert)):
            return True  # init's, or without a name asked for: due at once
        return now >= renew_from(cert, self.renew_days)


def _dns_names(cert: x509.Certificate) -> list[str]:
    try:
        alternative = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(name) for name in alternative.get_values_for_type(x509.DNSName)]


def _names(cert: x509.Certificate) -> str:
    return ", ".join(_dns_names(cert)) or cert.subject.rfc4514_string()


async def served(settings: Settings) -> x509.Certificate | None:
    """What a client sees: the certificate of the first submission listener (implicit TLS, else STARTTLS);
    None without one, or when it does not answer (the services check says so). Not the MX: a greeting
    there would count as a stranger's session in the traffic check."""
    context = reading_context()
    try:
        for item in settings.submissions.listen[:1]:
            opening = asyncio.open_connection(local(item), item.port, ssl=context)
            _reader, writer = await asyncio.wait_for(opening, TIMEOUT)
            try:
                return _certificate(writer.get_extra_info("ssl_object"))
            finally:
                writer.close()
        for item in settings.submission.listen[:1]:
            client = aiosmtplib.SMTP(hostname=local(item), port=item.port, start_tls=False, timeout=TIMEOUT)
            async with client:
                await client.starttls(tls_context=context)
                return _certificate(client.get_transport_info("ssl_object"))
    except (OSError, TimeoutError, aiosmtplib.SMTPException):
        return None
    return None


def _certificate(connection: ssl.SSLObject | None) -> x509.Certificate | None:
    der = connection.getpeercert(binary_form=True) if connection is not None else None
    return x509.load_der_x509_certificate(der) if der else None


def check(
    settings: CertsCheckSettings,
    certificate: Path,
    now: float,
    serving: x509.Certificate | None = None,
    renewals: Renewals | None = None,
) -> Result | None:
    """CERTIFICATE is tls/cert.pem; SERVING, what the listeners serve, when one answered. The daemon loads a
    changed pair within seconds (tls_reload.py); they differ for longer when the new pair does not load.
    RENEWALS: None with ACME off (a certbot user's file, or init's self-signed one)."""
    try:
        cert = x509.load_pem_x509_certificate(certificate.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        return Result(
            "certs",
            State.CRITICAL,
            f"cannot read the certificate {certificate}: {error}.",
            ja=f"証明書 {certificate} を読めません: {error}。",
        )
    if serving is None or serving == cert or _just_written(certificate, now):
        return _judge(settings, cert, now, renewals)
    judged = _judge(settings, serving, now, renewals)
    until = day(cert.not_valid_after_utc.timestamp())
    return Result(
        "certs",
        max(judged.state, State.WARNING),
        f"{judged.sentence.removesuffix('.')}, but it is not {certificate} (valid until {until}), which jitaku "
        "could not load: tls_reload_failed in its log says why.",
        judged.metrics,
        ja=f"{judged.ja.removesuffix('。')}。ただしこれは {certificate}（{until} まで有効）ではありません。"
        "jitaku はこの証明書を読み込めませんでした。理由はログの tls_reload_failed にあります。",
    )


def _just_written(certificate: Path, now: float) -> bool:
    """Whether the listeners may not have looked at the file since it changed (a renewal a moment ago): not a pair
    that failed to load, which a look after the next few would still find."""
    try:
        return now - certificate.stat().st_mtime < LOADED_WITHIN
    except OSError:
        return False


def _judge(settings: CertsCheckSettings, cert: x509.Certificate, now: float, renewals: Renewals | None) -> Result:
    ends = cert.not_valid_after_utc
    days = (ends.timestamp() - now) / 86400
    names = _names(cert)
    about, about_ja = f"the certificate for {names}", f"{names} の証明書"
    when = day(ends.timestamp())
    metrics = {"days_left": round(days, 2)}
    if days <= 0:
        expiry, expiry_ja = f"{about} expired on {when}", f"{about_ja}は {when} に期限が切れました"
    else:
        expiry = f"{about} expires on {when}, in {counted(days, 'day')}"
        expiry_ja = f"{about_ja}は {when} に期限が切れます（あと {days:.0f} 日）"
    attempts = renewals.attempts if renewals is not None else Attempts()
    if renewals is not None and renewals.failing(cert, now):
        error, next_try = attempts.last_error.removesuffix("."), moment(attempts.next_try)
        if cert.issuer == cert.subject and days > 0:  # init's, served until ACME gives one
            wanted = ", ".join(renewals.names)
            return Result(
                "certs",
                State.WARNING,
                f"no certificate from ACME yet for {wanted}: {error}; the next try is at {next_try}; the "
                "self-signed one is served meanwhile.",
                metrics,
                FAILED,
                ja=f"{wanted} の ACME の証明書はまだありません: {error}。次の試行は {next_try} です。"
                "それまでは自己署名の証明書を使います。",
            )
        return Result(
            "certs",
            State.CRITICAL if days <= settings.critical_days else State.WARNING,
            f"{expiry}; its renewal failed: {error}; the next try is at {next_try}.",
            metrics,
            FAILED,
            ja=f"{expiry_ja}。更新に失敗しました: {error}。次の試行は {next_try} です。",
        )
    if days <= 0:
        return Result("certs", State.CRITICAL, f"{expiry}.", metrics, ja=f"{expiry_ja}。")
    if days <= settings.warning_days:
        state = State.CRITICAL if days <= settings.critical_days else State.WARNING
        return Result("certs", state, f"{expiry}.", metrics, ja=f"{expiry_ja}。")
    if attempts.last_success:
        renewed = day(attempts.last_success)
        return Result(
            "certs",
            State.OK,
            f"{about} is valid until {when}, renewed on {renewed}.",
            metrics,
            ja=f"{about_ja}は {when} まで有効です（{renewed} に更新）。",
        )
    return Result(
        "certs", State.OK, f"{about} is valid until {when}.", metrics, ja=f"{about_ja}は {when} まで有効です。"
    )
