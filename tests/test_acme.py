"""jitaku.acme without a CA: HTTP-01 tokens stay inside their directory, when a renewal is due, and what the
attempts' state keeps."""

from __future__ import annotations

import datetime
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from jitaku.acme import dns01, http01, issue, state
from jitaku.config import Config, parse
from jitaku.tls import ensure_self_signed

DAY = 86400.0
NAMES = ("mail.example.org", "mta-sts.example.org")


def _config(data_dir: Path, acme: str = 'email = "owner@example.org"\n') -> Config:
    return Config(parse(f'domains = ["example.org"]\n[acme]\n{acme}', data_dir / "jitaku.toml"), data_dir)


def _issued(config: Config, lifetime: float, age: float, names: tuple[str, ...] = NAMES) -> float:
    """A CA-signed certificate for NAMES in tls/, LIFETIME seconds long, AGE seconds old; its not-after."""
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    start = now - datetime.timedelta(seconds=age)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(seconds=lifetime))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name) for name in names]), critical=False)
        .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    )
    config.tls_dir.mkdir(parents=True, exist_ok=True)
    (config.tls_dir / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return certificate.not_valid_after_utc.timestamp()


def test_a_token_is_a_file_in_its_directory_and_nothing_else_is_read(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("not for the web")
    http01.publish(tmp_path, "tok-EN_1", "tok-EN_1.thumbprint")
    assert http01.read(tmp_path, "tok-EN_1") == "tok-EN_1.thumbprint"
    assert (tmp_path / "acme" / "http-01" / "tok-EN_1").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "acme" / "http-01").stat().st_mode & 0o777 == 0o755
    for bad in ("../../secret", "..", "a/b", "", "x" * 129, "tok.EN"):
        assert http01.read(tmp_path, bad) is None
    http01.withdraw(tmp_path, "tok-EN_1")
    assert http01.read(tmp_path, "tok-EN_1") is None


def test_a_renewal_is_due_for_no_certificate_a_self_signed_one_or_one_without_a_name(tmp_path: Path) -> None:
    config = _config(tmp_path)
    now = datetime.datetime.now(datetime.UTC).timestamp()
    assert issue.due(config, now) == "there is no certificate yet" and issue.due_at(config) == 0.0
    ensure_self_signed(config.tls_dir, "mail.example.org")
    assert issue.due(config, now) == "the certificate is self-signed, not from a CA"
    _issued(config, 90 * DAY, 0, names=("mail.example.org",))
    assert issue.due(config, now) == "the certificate does not name mta-sts.example.org"
    assert issue.due(_config(tmp_path, ""), now) is None and issue.due_at(_config(tmp_path, "")) is None  # ACME off


def test_a_fresh_certificate_is_due_30_days_before_its_end_and_a_short_lived_one_at_a_third_left(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    now = datetime.datetime.now(datetime.UTC).timestamp()
    end = _issued(config, 90 * DAY, DAY)
    assert issue.due(config, now) is None and issue.due_at(config) == end - 30 * DAY
    assert issue.due(config, end - 30 * DAY) is not None

    end = _issued(config, 6 * DAY, DAY)  # Let's Encrypt's short-lived certificates: due at 2 days left, not now
    assert issue.due(config, now) is None and issue.due_at(config) == end - 2 * DAY
    assert issue.due(config, end - 2 * DAY + 1) == f"the certificate expires at {issue._iso(end)}"


def test_the_state_keeps_failures_with_backoff_and_a_success_clears_them(tmp_path: Path) -> None:
    assert state.read(tmp_path) == state.Attempts()
    state.write(tmp_path, state.read(tmp_path).failed(1000.0, "the CA limits our rate: too many", retry_after=3600))
    failed = state.read(tmp_path)
    assert failed.last_error == "the CA limits our rate: too many" and failed.next_try == 4600.0
    assert state.path(tmp_path).stat().st_mode & 0o777 == 0o600
    state.write(tmp_path, failed.failed(5000.0, "again"))
    assert state.read(tmp_path).next_try == 5000.0 + 2 * state.FIRST_RETRY
    state.write(tmp_path, state.read(tmp_path).succeeded(6000.0, [("mta-sts.example.org", "no DNS record")]))
    assert state.read(tmp_path) == state.Attempts(
        last_try=6000.0, last_success=6000.0, left_out=(("mta-sts.example.org", "no DNS record"),)
    )


def test_dns01_sets_a_name_through_the_cloudflare_table_whose_zone_holds_it(tmp_path: Path) -> None:
    tables = "".join(
        f'[[ddns]]\nprovider = "{provider}"\nname = "{name}"\n{zone}password = "token"\nusername = "u"\n'
        for provider, name, zone in (
            ("cloudflare", "home.example.org", ""),  # its zone: the organizational domain, example.org
            ("cloudflare", "box.lab.example.org", 'zone = "lab.example.org"\n'),
            ("dyndns2", "home.example.net", ""),  # DynDNS2 sets addresses, never TXT records
        )
    )
    config = Config(parse(f'domains = ["example.org"]\n{tables}', tmp_path / "jitaku.toml"), tmp_path)
    assert dns01.table_for(config, "mail.example.org").name == "home.example.org"
    assert dns01.table_for(config, "mta-sts.lab.example.org").name == "box.lab.example.org"
    with pytest.raises(dns01.DnsError, match="no cloudflare \\[\\[ddns\\]\\] table has a zone holding www.example.net"):
        dns01.table_for(config, "www.example.net")


def _cloudflare_table(data_dir: Path, endpoint: str, dns_port: int) -> Config:
    table = (
        f'[[ddns]]\nprovider = "cloudflare"\nname = "home.example.org"\npassword = "token"\nendpoint = "{endpoint}"\n'
        f'verify_nameservers = ["127.0.0.1:{dns_port}"]\n'
    )
    return Config(parse(f'domains = ["example.org"]\n{table}', data_dir / "jitaku.toml"), data_dir)


def test_dns01_waits_until_the_zones_servers_serve_the_record_and_no_longer_than_it_may(
    tmp_path: Path, stand_in, dns_zone
) -> None:
    zone, dns_port = dns_zone
    zone.add("example.org. 60 IN SOA ns.example.org. hostmaster.example.org. 1 60 60 60 60")
    zones, made = {"success": True, "result": [{"id": "z1"}]}, {"success": True, "result": {"id": "t1"}}
    api = stand_in(lambda method, path, query, headers, body: (200, zones if path == "/zones" else made))
    records = dns01.TxtRecords(_cloudflare_table(tmp_path, api.url, dns_port))
    records.set("mail.example.org", "value-1")
    started = time.monotonic()
    records.wait_served(wait=3.0)  # never served: given up after WAIT, the CA left to judge
    assert 3.0 <= time.monotonic() - started < 30.0

    threading.Timer(1.0, zone.add, ('_acme-challenge.mail.example.org. 60 IN TXT "value-1"',)).start()
    started = time.monotonic()
    records.wait_served(wait=60.0)
    assert 1.0 <= time.monotonic() - started < 30.0  # as soon as it is served


def test_dns01_deletes_a_record_whose_post_answer_was_lost(tmp_path: Path, stand_in) -> None:
    """Cloudflare made the record, but its answer never came: it is found by name and value, and deleted."""
    zone: dict[str, dict[str, str]] = {
        "keep": {"type": "TXT", "name": "_acme-challenge.mail.example.org", "content": '"other"'}
    }
    deleted = []

    def cloudflare(method: str, path: str, query: Any, headers: Any, body: bytes) -> tuple[int, Any]:
        if path == "/zones":
            return 200, {"success": True, "result": [{"id": "z1"}]}
        if method == "POST":
            zone["lost"] = json.loads(body)
            return 502, "<html>Bad gateway</html>"
        if method == "GET":
            named = [{"id": key, **record} for key, record in zone.items() if record["name"] == query["name"][0]]
            return 200, {"success": True, "result": named}
        deleted.append(path.rsplit("/", 1)[1])
        zone.pop(deleted[-1])
        return 200, {"success": True, "result": {}}

    records = dns01.TxtRecords(_cloudflare_table(tmp_path, stand_in(cloudflare).url, 53))
    with pytest.raises(dns01.DnsError, match="HTTP 502"):
        records.set("mail.example.org", "value-1")
    assert records.clear() == []
    assert deleted == ["lost"] and list(zone) == ["keep"]  # another order's record stays
