"""A certificate from the ACME CA for `Settings.acme_names`, written as tls/key.pem and tls/cert.pem, and when the
next one is due. Synchronous: the daemon runs `obtain` in a thread, `jitaku cert renew` directly.

Whatever fails becomes an AcmeError of one sentence, which `jitaku cert status` shows, the certs check alerts with
and state.json keeps; the certificate served stays as it was until a new one is whole.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import requests
from acme import challenges, client, crypto_util, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.errors import Error as JoseError

from jitaku import files, log
from jitaku.acme import account, dns01, http01, state
from jitaku.acme.lifetime import renew_from as renew_from  # where renewal, the CLI and the certs check look
from jitaku.config import Config, ConfigError
from jitaku.tls import CERT, KEY

DEADLINE = 180.0  # seconds for the CA to validate every name and issue
OBTAIN_DEADLINE = 300.0  # seconds for a whole renewal, a second order without the names left out included
LOCK_NAME = "lock"
CLOCK_SKEW = datetime.timedelta(minutes=5)  # a CA's clock a little ahead of ours still issues a good certificate
CHAIN_MAX = 64 * 1024  # bytes: a real chain is a few KiB; more is a web page or worse


class AcmeError(Exception):
    """One plain sentence for a person; RETRY_AFTER: seconds the CA asked us to wait (a rate limit)."""

    def __init__(self, sentence: str, retry_after: float | None = None) -> None:
        super().__init__(sentence)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Issued:
    names: tuple[str, ...]
    not_after: float  # Unix seconds
    left_out: tuple[tuple[str, str], ...] = ()  # (name, why): names the CA would not validate, issued without

    def left_out_text(self) -> str:
        return "; ".join(f"{name}: {why}" for name, why in self.left_out)


def obtain(
    config: Config,
    now: float,
    force: bool = False,
    waiting: Callable[[], None] | None = None,
    stop: threading.Event | None = None,
) -> Issued | None:
    """A new key and certificate for the configured names, in place for every listener's next handshake; None
    when, once our turn came, the certificate was no longer due (another renewal got it meanwhile: a second order
    would spend one of the CA's few duplicate certificates a week), unless FORCE. Holds DIR/acme/lock throughout
    (an flock: the kernel drops it with the process, so a power cut leaves no stale lock), so that the daemon's
    renewal and a person's `jitaku cert renew` never order at once; WAITING is called when the other holds it.
    STOP, once set (the daemon fenced or stopping), installs nothing and records no failure: the try did not fail,
    it was called off."""
    data_dir = config.data_dir
    with _locked(data_dir, waiting):
        if not force and due(config, time.time()) is None:
            log.event("acme_not_due", why="renewed meanwhile")
            return None
        try:
            issued = _obtain(config, stop)
        except AcmeError as error:
            if stop is not None and stop.is_set():
                log.event("acme_stopped")
                raise
            attempts = state.read(data_dir).failed(now, str(error), error.retry_after)
            state.write(data_dir, attempts)
            log.event("acme_failed", error=str(error), next_try=state.moment(attempts.next_try))
            raise
        state.write(data_dir, state.read(data_dir).succeeded(now, issued.left_out))
        log.event("acme_issued", names=",".join(issued.names), left_out=issued.left_out_text() or None)
        return issued


@contextlib.contextmanager
def _locked(data_dir: Path, waiting: Callable[[], None] | None = None) -> Iterator[None]:
    """DIR/acme/lock held; the file the data directory's owner's, as everything in DIR/acme."""
    where = state.directory(data_dir) / LOCK_NAME
    lock = os.open(where, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        owner = files.owner(data_dir)
        if owner is not None:
            os.fchown(lock, *owner)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting is not None:
                waiting()
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield
    finally:
        os.close(lock)


def _obtain(config: Config, stop: threading.Event | None = None) -> Issued:
    ends = time.monotonic() + OBTAIN_DEADLINE
    names = config.settings.acme_names
    url = config.settings.acme.directory
    try:
        _check_directory_ca(config)
        acme = account.client_for(config)
        key = ec.generate_private_key(ec.SECP256R1())
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        left_out: tuple[tuple[str, str], ...] = ()
        while True:
            try:
                order = _validated(config, acme, crypto_util.make_csr(key_pem, list(names)), ends)
                break
            except _Refused as refused:
                kept = tuple(name for name in names if name not in refused.failed)
                mail = config.settings.mail_hostname
                if left_out or not kept or kept == names or (mail in names and mail not in kept):
                    ours = [refused.failed[name] for name in names if name in refused.failed]
                    raise AcmeError((ours or list(refused.failed.values()))[0]) from None
                left_out, names = tuple(refused.failed.items()), kept
        if stop is not None and stop.is_set():
            raise AcmeError("the renewal was called off: jitaku is stopping or fenced")
        chain_pem = order.fullchain_pem.encode()
        leaf = _checked(chain_pem, key, names)
        _install(config, key_pem, chain_pem)
    except AcmeError:
        raise
    except requests.RequestException as error:
        raise AcmeError(f"cannot reach the ACME directory {url}: {_network_reason(error)}") from None
    except account.RateLimited as error:
        raise AcmeError(f"the CA limits our rate: {error}", error.retry_after) from None
    except messages.Error as error:
        raise AcmeError(f"the CA refused: {error.detail or error.description or error.typ}") from None
    except (errors.ClientError, JoseError, KeyError, ValueError, TypeError) as error:
        raise AcmeError(f"the ACME server at {url} answered something that is not ACME ({_garbage(error)})") from None
    except errors.TimeoutError:
        raise AcmeError(f"the CA did not validate and issue in time ({DEADLINE:.0f} s); it may still be busy") from None
    except errors.Error as error:
        raise AcmeError(f"the CA refused the order: {error}") from None
    except (dns01.DnsError, ConfigError, account.AccountError) as error:
        raise AcmeError(str(error)) from None
    except OSError as error:  # after requests' errors, which are OSErrors too
        raise AcmeError(f"cannot write {error.filename or 'a file'}: {error.strerror or error}") from None
    return Issued(names, leaf.not_valid_after_utc.timestamp(), left_out)


def _checked(chain_pem: bytes, key: ec.EllipticCurvePrivateKey, names: tuple[str, ...]) -> x509.Certificate:
    """The leaf of the chain the CA sent, when it is a certificate for KEY and every one of NAMES, valid now:
    installed otherwise (a proxy's error page, a CA's bug), the pair would stop every listener's next start."""
    certificates: list[x509.Certificate] = []
    if len(chain_pem) <= CHAIN_MAX:
        with contextlib.suppress(ValueError):
            certificates = x509.load_pem_x509_certificates(chain_pem)
    if not certificates:
        raise AcmeError("the CA sent a certificate that is not a PEM certificate chain; nothing was installed")
    leaf = certificates[0]
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if leaf.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise AcmeError("the CA sent a certificate that is not for our key; nothing was installed")
    missing = [name for name in names if name not in names_of(leaf)]
    if missing:
        raise AcmeError(f"the CA sent a certificate that does not name {', '.join(missing)}; nothing was installed")
    now = datetime.datetime.now(datetime.UTC)
    if not leaf.not_valid_before_utc - CLOCK_SKEW <= now < leaf.not_valid_after_utc:
        raise AcmeError("the CA sent a certificate that is not valid now; nothing was installed")
    return leaf


def _check_directory_ca(config: Config) -> None:
    """A CA file that cannot be read is said as such: requests would call it an invalid CA bundle path, an OSError
    that reads as a file we cannot write."""
    ca = config.settings.acme.directory_ca
    if not ca:
        return
    where = config.data_dir / ca
    try:
        with open(where, "rb") as found:
            found.read(1)
    except OSError as error:
        raise AcmeError(f"cannot read [acme] directory_ca {where}: {error.strerror or error}") from None


class _Refused(Exception):
    """Some names' authorizations failed: FAILED maps each to why."""

    def __init__(self, failed: dict[str, str]) -> None:
        super().__init__()
        self.failed = failed


def _validated(config: Config, acme: client.ClientV2, csr: bytes, ends: float) -> messages.OrderResource:
    """The order for CSR's names, each proven by the configured challenge, finalized by ENDS (time.monotonic) at
    the latest; the tokens and TXT records withdrawn after, whatever happened."""
    _remaining(ends)
    try:
        order = acme.new_order(csr)
    except messages.Error as error:
        rejected = _rejected(error)
        if rejected:
            raise _Refused(rejected) from None
        raise
    kind = config.settings.acme.challenge
    tokens: list[str] = []
    records = dns01.TxtRecords(config)
    jwk = acme.net.key
    owner = files.owner(config.data_dir)
    try:
        answers = []
        for authorization in order.authorizations:
            name = authorization.body.identifier.value
            if authorization.body.status == messages.STATUS_VALID:
                continue  # validated lately, for this account: the CA may reuse it
            challenge = _challenge(authorization, kind, name)
            response, validation = challenge.response_and_validation(jwk)
            if kind == "http-01":
                http01.publish(config.data_dir, challenge.chall.encode("token"), validation, owner)
                tokens.append(challenge.chall.encode("token"))
            else:
                records.set(name, validation)
            answers.append((challenge, response))
        records.wait_served()  # DNS-01: the CA asks the zone's servers at once; none set for HTTP-01
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=min(DEADLINE, _remaining(ends)))
        for challenge, response in answers:
            acme.answer_challenge(challenge, response)
        try:
            order = acme.poll_authorizations(order, deadline)
        except errors.ValidationError as error:
            raise _Refused({_name(a): _failure(kind, a) for a in error.failed_authzrs}) from None
        return acme.finalize_order(order, deadline)
    finally:
        _clean_up(config, tokens, records)


def _remaining(ends: float) -> float:
    """Seconds left until ENDS (time.monotonic); the acme package's TimeoutError when none are."""
    left = ends - time.monotonic()
    if left <= 0:
        raise errors.TimeoutError()
    return left


def _clean_up(config: Config, tokens: list[str], records: dns01.TxtRecords) -> None:
    """Withdraw the tokens and delete the TXT records, logging what cannot be: raised here, it would hide why the
    order failed, which is what a person needs to read."""
    for token in tokens:
        try:
            http01.withdraw(config.data_dir, token)
        except Exception as error:  # noqa: BLE001 - an OS's or a bug's: logged, the order's own error goes on
            log.event("acme_token_left", logging.WARNING, token=token, error=repr(error))
    try:
        left = records.clear()
    except Exception as error:  # noqa: BLE001 - a DNS provider's odd answer: logged, as above
        left = [repr(error)]
    if left:
        log.event("acme_txt_left", logging.WARNING, errors="; ".join(left))


def _rejected(error: messages.Error) -> dict[str, str]:
    """The names a refused new order's problem says the CA will never issue for (RFC 8555 §6.7.1 subproblems,
    rejectedIdentifier), each with why: left out, the order can go on for the rest."""
    found = {}
    for problem in (error, *(error.subproblems or ())):
        if problem.code == "rejectedIdentifier" and problem.identifier is not None:
            why = problem.detail or problem.description or problem.typ
            found[str(problem.identifier.value)] = f"the CA will not issue for this name: {why}"
    return found


def _challenge(authorization: messages.AuthorizationResource, kind: str, name: str) -> messages.ChallengeBody:
    wanted = challenges.HTTP01 if kind == "http-01" else challenges.DNS01
    for challenge in authorization.body.challenges:
        if isinstance(challenge.chall, wanted):
            return challenge
    raise AcmeError(f"the CA offers no {kind} challenge for {name}; set [acme] challenge to the other one")


def _name(authorization: messages.AuthorizationResource) -> str:
    return str(authorization.body.identifier.value)


def _failure(kind: str, authorization: messages.AuthorizationResource) -> str:
    """Why the CA would not validate AUTHORIZATION's name, named as the challenge that could not be served."""
    name = _name(authorization)
    problems = [c.error for c in authorization.body.challenges if c.error is not None]
    detail = (problems[0].detail or problems[0].typ) if problems else "no reason given"
    if kind == "http-01":
        return (
            f"the CA could not fetch http://{name}/.well-known/acme-challenge/ "
            f"(port 80 must reach this box from the Internet): {detail}"
        )
    return f"the CA did not find the TXT record {dns01.record_name(name)}: {detail}"


def _network_reason(error: requests.RequestException) -> str:
    """The reason a person can act on, out of requests' nest of wrapped errors."""
    text = str(error)
    if isinstance(error, requests.exceptions.SSLError):
        found = re.search(r"\[SSL: [A-Z_]+\] ([^(]+?)\s*\(", text)
        return f"TLS failed: {found.group(1) if found else 'handshake refused'}"
    if isinstance(error, requests.exceptions.Timeout):
        return f"no answer within {account.TIMEOUT} s"
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    return found.group(1).strip() if found else error.__class__.__name__


def _garbage(error: Exception) -> str:
    reason = error.args[0] if error.args else error
    if isinstance(reason, requests.Response):
        return f"HTTP {reason.status_code}, {reason.headers.get('Content-Type') or 'no content type'}"
    if str(reason).startswith("Unexpected response Content-Type: "):  # a web page where the directory should be
        return f"{str(reason).rsplit(' ', 1)[1]}, not JSON"
    if isinstance(error, KeyError):
        return f"no {error.args[0]} in its directory"
    return str(reason).splitlines()[0][:200] if str(reason) else error.__class__.__name__


def _install(config: Config, key_pem: bytes, chain_pem: bytes) -> None:
    """The key first, then the chain: the listeners reload a pair that matches (jitaku.tls_reload), so the moment
    between the two keeps the old pair; the standby gets both through jitaku.ha.secret_files."""
    owner = files.owner(config.data_dir)
    tls_dir = config.tls_dir
    tls_dir.mkdir(parents=True, exist_ok=True)
    files.replace(tls_dir / KEY, key_pem, 0o600, owner)
    files.replace(tls_dir / CERT, chain_pem, 0o644, owner)
    directory = os.open(tls_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)  # both renames on disk: after a power cut, never the new key with the old certificate
    finally:
        os.close(directory)


def certificate(config: Config) -> x509.Certificate | None:
    """The leaf of tls/cert.pem; None when missing or unreadable."""
    try:
        return x509.load_pem_x509_certificate((config.tls_dir / CERT).read_bytes())
    except (OSError, ValueError):
        return None


def names_of(cert: x509.Certificate) -> list[str]:
    try:
        found = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [str(name) for name in found.value.get_values_for_type(x509.DNSName)]


def _self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject


def due(config: Config, now: float) -> str | None:
    """Why a renewal is due now, or None (ACME off, or the certificate good for a while yet)."""
    settings = config.settings
    if not settings.acme.enabled:
        return None
    cert = certificate(config)
    if cert is None:
        return "there is no certificate yet"
    if _self_signed(cert):
        return "the certificate is self-signed, not from a CA"
    missing = [name for name in settings.acme_names if name not in names_of(cert)]
    if missing:
        return f"the certificate does not name {', '.join(missing)}"
    if now >= renew_from(cert, settings.acme.renew_days):
        return f"the certificate expires at {_iso(cert.not_valid_after_utc.timestamp())}"
    return None


def due_at(config: Config) -> float | None:
    """When `due` starts saying a renewal is due; 0.0 when it is due already for what the certificate is (missing,
    self-signed, without a name); None when ACME is off."""
    if not config.settings.acme.enabled:
        return None
    cert = certificate(config)
    if cert is None or _self_signed(cert) or set(config.settings.acme_names) - set(names_of(cert)):
        return 0.0
    return renew_from(cert, config.settings.acme.renew_days)


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat(timespec="seconds")
