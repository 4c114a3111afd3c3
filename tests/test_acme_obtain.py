"""issue.obtain against a stand-in CA (account.client_for and issue._validated replaced): what it installs, what it
refuses to, and what state.json keeps of it."""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pytest
from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from jitaku import files, privileges, provision
from jitaku.acme import account, http01, issue, state
from jitaku.config import Config, parse
from jitaku.tls import ensure_self_signed, server_context
from tests.certificates import signed_by_test_ca
from tests.peers import wait_until

NAMES = ("mail.example.org", "mta-sts.example.org")
NOBODY = 65534


@dataclass
class Order:
    fullchain_pem: str


def _config(data_dir: Path) -> Config:
    text = 'hostname = "mail.example.org"\ndomains = ["example.org"]\n[acme]\nemail = "owner@example.org"\n'
    return Config(parse(text, data_dir / "jitaku.toml"), data_dir)


def _signed(public_key: ec.EllipticCurvePublicKey, names: tuple[str, ...], days: float = 90) -> str:
    now = datetime.datetime.now(datetime.UTC)
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Stand-in CA")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=100))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name) for name in names]), critical=False)
        .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def _csr_key(csr: bytes) -> ec.EllipticCurvePublicKey:
    found = x509.load_pem_x509_csr(csr).public_key()
    assert isinstance(found, ec.EllipticCurvePublicKey)
    return found


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setattr(account, "client_for", lambda config: object())
    found = _config(tmp_path)
    ensure_self_signed(found.tls_dir, "mail.example.org")
    return found


def _answering(monkeypatch: pytest.MonkeyPatch, chain: object) -> None:
    """The stand-in CA answers every order with CHAIN: a text, or a function of the CSR's public key."""

    def validated(config: Config, acme: object, csr: bytes, ends: float) -> Order:
        return Order(chain(_csr_key(csr)) if callable(chain) else str(chain))

    monkeypatch.setattr(issue, "_validated", validated)


@pytest.mark.parametrize(
    ("chain", "sentence"),
    [
        ("<html>proxy error</html>", "not a PEM certificate chain"),
        (lambda key: _signed(ec.generate_private_key(ec.SECP256R1()).public_key(), NAMES), "not for our key"),
        (lambda key: _signed(key, NAMES[:1]), "does not name mta-sts.example.org"),
        (lambda key: _signed(key, NAMES, days=-1), "not valid now"),
        (lambda key: _signed(key, NAMES) + "x" * issue.CHAIN_MAX, "not a PEM certificate chain"),
    ],
)
def test_a_certificate_the_ca_sent_that_is_not_ours_is_refused_and_the_pair_served_stays(
    config: Config, monkeypatch: pytest.MonkeyPatch, chain: object, sentence: str
) -> None:
    before = {name: (config.tls_dir / name).read_bytes() for name in ("cert.pem", "key.pem")}
    _answering(monkeypatch, chain)
    with pytest.raises(issue.AcmeError, match=f"the CA sent a certificate that .*{sentence}"):
        issue.obtain(config, 1000.0)
    assert {name: (config.tls_dir / name).read_bytes() for name in before} == before
    attempts = state.read(config.data_dir)
    assert sentence in attempts.last_error and attempts.failures == 1 and attempts.next_try > 1000.0


def test_a_certificate_for_our_key_and_names_is_installed(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    _answering(monkeypatch, lambda key: _signed(key, NAMES))
    issued = issue.obtain(config, 1000.0)
    assert issued is not None and issued.names == NAMES
    assert issue.due(config, datetime.datetime.now(datetime.UTC).timestamp()) is None
    assert state.read(config.data_dir).last_success == 1000.0


@pytest.mark.parametrize("retry_after", ["99999999999999", "Fri, 31 Dec 9999 23:59:59 GMT", "１２"])
def test_a_retry_after_of_years_waits_a_week_at_most(retry_after: str) -> None:
    seconds = account._seconds(retry_after)
    assert seconds is None or 0 <= seconds <= state.LONGEST_WAIT
    attempts = state.Attempts().failed(1000.0, "the CA limits our rate", seconds)
    assert attempts.next_try <= 1000.0 + state.LONGEST_WAIT


def test_cert_status_and_renew_read_a_state_file_with_times_out_of_range(tmp_path: Path) -> None:
    """A state.json from an older version, or garbage: shown as no time at all, never an internal error."""
    config = _config(tmp_path)
    (config.data_dir / "jitaku.toml").write_text(
        'hostname = "mail.example.org"\ndomains = ["example.org"]\n[acme]\nemail = "owner@example.org"\n'
        'directory = "https://127.0.11.51:9/directory"\n'
    )
    state.path(tmp_path).parent.mkdir()
    garbage = {"next_try": 1e17, "last_success": float("nan"), "last_try": "soon", "failures": -3, "last_error": 7}
    state.path(tmp_path).write_text(json.dumps(garbage))
    assert state.read(tmp_path) == state.Attempts()
    shown = _jitaku(tmp_path, "cert", "status", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["next_try"] is None
    renewed = _jitaku(tmp_path, "cert", "renew")
    assert renewed.returncode == 1 and renewed.stderr.startswith("jitaku: renewal failed: "), renewed.stderr


def _jitaku(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jitaku", *args, "--dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_a_missing_directory_ca_is_named_as_such(tmp_path: Path) -> None:
    (tmp_path / "jitaku.toml").write_text(
        'hostname = "mail.example.org"\ndomains = ["example.org"]\n[acme]\nemail = "owner@example.org"\n'
        'directory = "https://127.0.11.51:9/directory"\ndirectory_ca = "missing.pem"\n'
    )
    renewed = _jitaku(tmp_path, "cert", "renew")
    assert renewed.returncode == 1
    assert renewed.stderr.startswith(
        f"jitaku: renewal failed: cannot read [acme] directory_ca {tmp_path / 'missing.pem'}: No such file"
    ), renewed.stderr


def test_an_account_file_that_cannot_be_read_registers_no_new_account(tmp_path: Path) -> None:
    config = _config(tmp_path)
    account.path(tmp_path).mkdir(parents=True)  # there, but no file: as unreadable as one of another user's
    with pytest.raises(issue.AcmeError, match="^cannot read the ACME account .*account.json: Is a directory"):
        issue.obtain(config, 1000.0)
    assert account.path(tmp_path).is_dir()
    account.path(tmp_path).rmdir()
    account.path(tmp_path).write_text("{not json")
    assert account.read(tmp_path) is None  # corrupt: registering again is all there is to do


def test_a_cleanup_that_fails_is_logged_and_hides_nothing(
    config: Config, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refused(data_dir: Path, token: str) -> None:
        raise PermissionError(13, "Permission denied")

    class Records:
        def clear(self) -> list[str]:
            raise KeyError("result")

    monkeypatch.setattr(http01, "withdraw", refused)
    with caplog.at_level(logging.INFO):
        issue._clean_up(config, ["tok"], Records())  # type: ignore[arg-type]
    logged = caplog.text
    assert "acme_token_left" in logged and "Permission denied" in logged
    assert "acme_txt_left" in logged and "result" in logged


def test_cert_status_shows_the_cas_text_without_terminal_controls(tmp_path: Path) -> None:
    (tmp_path / "jitaku.toml").write_text('domains = ["example.org"]\n[acme]\nemail = "owner@example.org"\n')
    state.write(tmp_path, state.Attempts().failed(1000.0, "the CA refused: \x1b[2J\x1b]0;owned\x07"))
    shown = _jitaku(tmp_path, "cert", "status")
    assert shown.returncode == 0, shown.stderr
    assert "\x1b" not in shown.stdout and "\\x1b[2J" in shown.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="root writing into another user's data directory")
def test_what_root_writes_for_acme_is_the_data_directorys_owners() -> None:
    """The daemon, running as that user, must be able to start (privileges.foreign), take the lock and serve the
    tokens root published."""
    data_dir = Path(tempfile.mkdtemp(prefix="jitaku-acme-owner-"))  # not under pytest's root-only tmp tree
    try:
        os.chown(data_dir, NOBODY, NOBODY)
        with issue._locked(data_dir):
            http01.publish(data_dir, "tok-1", "tok-1.thumbprint", files.owner(data_dir))
            state.write(data_dir, state.Attempts())
        assert privileges.foreign(data_dir, NOBODY) is None
        read = subprocess.run(
            ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "cat", "acme/http-01/tok-1"],
            cwd=data_dir,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert read.stdout == "tok-1.thumbprint", read.stderr
    finally:
        shutil.rmtree(data_dir)


def test_a_web_url_on_an_address_or_a_lan_name_is_no_acme_name(tmp_path: Path) -> None:
    for url in ("http://192.168.1.5:8025/", "http://localhost:8025", "http://nas.local/", "http://[::1]/"):
        text = f'hostname = "mail.example.org"\ndomains = ["example.org"]\n[web]\nurl = "{url}"\n'
        assert parse(text, tmp_path / "jitaku.toml").acme_names == ("mail.example.org", "mta-sts.example.org"), url
    text = 'hostname = "mail.example.org"\ndomains = ["example.org"]\n[web]\nurl = "https://www.example.org/"\n'
    assert parse(text, tmp_path / "jitaku.toml").acme_names == NAMES[:1] + ("www.example.org",) + NAMES[1:]


class RefusingCA:
    """A CA whose newOrder refuses an order naming REFUSED (rejectedIdentifier, in a subproblem, as Boulder
    says it), and issues for any other at once."""

    def __init__(self, refused: str) -> None:
        self.refused = refused
        self.net = SimpleNamespace(key=None)
        self.orders: list[list[str]] = []

    def new_order(self, csr: bytes) -> SimpleNamespace:
        names = _csr_names(csr)
        self.orders.append(names)
        if self.refused in names:
            identifier = messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=self.refused)
            sub = messages.Error.with_code("rejectedIdentifier", detail="not a public name", identifier=identifier)
            raise messages.Error.with_code("rejectedIdentifier", detail="cannot issue", subproblems=(sub,))
        return SimpleNamespace(authorizations=[], csr=csr, names=tuple(names))

    def poll_authorizations(self, order: SimpleNamespace, deadline: object) -> SimpleNamespace:
        return order

    def finalize_order(self, order: SimpleNamespace, deadline: object) -> Order:
        return Order(_signed(_csr_key(order.csr), order.names))


def _csr_names(csr: bytes) -> list[str]:
    found = x509.load_pem_x509_csr(csr).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return found.value.get_values_for_type(x509.DNSName)


def test_a_name_the_ca_rejects_in_the_new_order_is_left_out_and_the_rest_issued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = 'hostname = "mail.example.org"\ndomains = ["example.org"]\n[acme]\nemail = "owner@example.org"\n'
    text += 'names = ["mail.example.org", "printer.example.org"]\n'
    config = Config(parse(text, tmp_path / "jitaku.toml"), tmp_path)
    ca = RefusingCA("printer.example.org")
    monkeypatch.setattr(account, "client_for", lambda config: ca)
    issued = issue.obtain(config, 1000.0)
    assert issued is not None
    assert ca.orders == [["mail.example.org", "printer.example.org"], ["mail.example.org"]]
    assert issued.names == ("mail.example.org",)
    assert issued.left_out == (("printer.example.org", "the CA will not issue for this name: not a public name"),)

    ca.refused = "mail.example.org"  # the mail hostname is not one to go without
    with pytest.raises(issue.AcmeError, match="^the CA will not issue for this name: not a public name$"):
        issue.obtain(config, 2000.0, force=True)


def test_cert_renew_waits_for_the_renewal_under_way_and_orders_nothing_when_it_got_one(tmp_path: Path) -> None:
    (tmp_path / "jitaku.toml").write_text(
        'hostname = "mail.example.org"\ndomains = ["example.org"]\n[acme]\nemail = "owner@example.org"\n'
        'directory = "https://127.0.11.51:9/directory"\n'  # nothing there: an order would fail
    )
    out = tmp_path / "out.txt"
    with _held_lock(tmp_path), out.open("w") as written:
        renewing = subprocess.Popen(
            [sys.executable, "-m", "jitaku", "cert", "renew", "--dir", str(tmp_path)],
            stdout=written,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"},
        )
        try:
            wait_until(lambda: "waiting for the renewal under way" in out.read_text(), timeout=60)
            (tmp_path / "tls").mkdir()
            signed_by_test_ca(tmp_path / "tls", NAMES)  # what the renewal under way got
        except BaseException:
            renewing.kill()
            raise
    _, stderr = renewing.communicate(timeout=60)
    assert renewing.returncode == 0, stderr
    assert out.read_text().splitlines()[1].startswith("not due: valid until ")
    assert state.read(tmp_path) == state.Attempts()  # no order, so no failure either


@contextlib.contextmanager
def _held_lock(data_dir: Path) -> Iterator[None]:
    """DIR/acme/lock held as another renewal under way holds it."""
    (data_dir / "acme").mkdir(mode=0o700)
    with open(data_dir / "acme" / issue.LOCK_NAME, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


class DeactivatingCA:
    """A CA client (acme.client.ClientV2's part account.client_for uses) at which every account but the ones
    registered here is deactivated: the lookup by key is refused as unauthorized, as Boulder refuses it."""

    registered: ClassVar[list[str]] = []

    def __init__(self, directory: object, net: account.Network) -> None:
        self.directory = directory
        self.net = net

    @staticmethod
    def get_directory(url: str, net: account.Network) -> object:
        return object()

    def query_registration(self, regr: messages.RegistrationResource) -> messages.RegistrationResource:
        if regr.uri in self.registered:
            return regr
        raise messages.Error.with_code("unauthorized", detail='Account is not valid, has status "deactivated"')

    def new_account(self, new: messages.NewRegistration) -> SimpleNamespace:
        self.registered.append(f"https://ca.example/acct/{len(self.registered) + 1}")
        return SimpleNamespace(uri=self.registered[-1])


def test_a_deactivated_account_is_replaced_by_a_new_one_with_a_new_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path)
    old = account.Account(ec.generate_private_key(ec.SECP256R1()), "https://ca.example/acct/0", "x")
    account.write(tmp_path, replace(old, directory=config.settings.acme.directory))
    monkeypatch.setattr(account.client, "ClientV2", DeactivatingCA)
    monkeypatch.setattr(DeactivatingCA, "registered", [])
    account.client_for(config)
    now = account.read(tmp_path)
    assert now is not None and now.url == "https://ca.example/acct/1"
    assert now.key.private_numbers() != old.key.private_numbers()
    account.client_for(config)  # and it stays
    assert DeactivatingCA.registered == ["https://ca.example/acct/1"]


def test_a_daemon_starting_with_a_key_that_is_not_the_certificates_serves_a_self_signed_pair(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A power cut between a renewal's two renames: the new key beside the old certificate."""
    config = _config(tmp_path)
    config.tls_dir.mkdir(mode=0o700)
    signed_by_test_ca(config.tls_dir, NAMES)
    new_key = ec.generate_private_key(ec.SECP256R1())
    (config.tls_dir / "key.pem").write_bytes(
        new_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with caplog.at_level(logging.INFO):
        made = provision.complete(config)  # the daemon's start, before the listeners load the pair
    server_context(config.tls_dir)  # loads: the listeners start
    served = issue.certificate(config)
    assert served is not None and served.issuer == served.subject and issue.names_of(served) == ["mail.example.org"]
    assert sorted(path.name.split(".broken-")[0] for path in config.tls_dir.glob("*.broken-*")) == [
        "cert.pem",
        "key.pem",
    ]
    assert any("moved to" in line for line in made)
    assert "tls_pair_broken" in caplog.text and "KEY_VALUES_MISMATCH" in caplog.text
    assert provision.set_aside_broken_pair(config.tls_dir) is None  # a pair that loads stays
