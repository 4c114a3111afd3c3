"""The certificate our listeners serve: an expired one makes every TLS client refuse us."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509

from jitaku.config import CertsCheckSettings
from jitaku.health.result import Result, State


def _names(cert: x509.Certificate) -> str:
    try:
        alternative = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return cert.subject.rfc4514_string()
    return ", ".join(alternative.get_values_for_type(x509.DNSName))


def check(settings: CertsCheckSettings, certificate: Path, now: float) -> Result | None:
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
    ends = cert.not_valid_after_utc
    days = (ends.timestamp() - now) / 86400
    names = _names(cert)
    about, about_ja = f"the certificate for {names}", f"{names} の証明書"
    when = ends.strftime("%Y-%m-%d")
    metrics = {"days_left": round(days, 2)}
    if days <= 0:
        return Result(
            "certs",
            State.CRITICAL,
            f"{about} expired on {when}.",
            metrics,
            ja=f"{about_ja}は {when} に期限が切れました。",
        )
    if days <= settings.warning_days:
        state = State.CRITICAL if days <= settings.critical_days else State.WARNING
        return Result(
            "certs",
            state,
            f"{about} expires on {when}, in {days:.0f} days.",
            metrics,
            ja=f"{about_ja}は {when} に期限が切れます（あと {days:.0f} 日）。",
        )
    return Result(
        "certs", State.OK, f"{about} is valid until {when}.", metrics, ja=f"{about_ja}は {when} まで有効です。"
    )
