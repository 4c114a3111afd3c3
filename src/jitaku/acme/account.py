"""The ACME account: its key (ECDSA P-256, signed ES256) and URL in DIR/acme/account.json, registered at the
directory it names. A changed `[acme] directory` registers anew there: an account lives at one CA.

The file is a secret (whoever holds the key can revoke our certificates): 0600, the data directory's owner's, and
mirrored to a standby with the other secrets (jitaku.ha.secret_files), which then renews as the same account.
"""

from __future__ import annotations

import email.utils
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acme import client, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.jwa import ES256
from josepy.jwk import JWKEC

from jitaku import __version__, files, log
from jitaku.acme import state
from jitaku.config import Config

ACCOUNT_NAME = "account.json"
USER_AGENT = f"jitaku/{__version__}"
TIMEOUT = 30  # seconds for each request to the CA
ACCOUNT_GONE = "urn:ietf:params:acme:error:accountDoesNotExist"
UNAUTHORIZED = "urn:ietf:params:acme:error:unauthorized"  # Boulder's and pebble's answer for a deactivated account
RATE_LIMITED = "urn:ietf:params:acme:error:rateLimited"


@dataclass(frozen=True)
class Account:
    key: ec.EllipticCurvePrivateKey
    url: str  # the account's URL at the CA, the `kid` of every request after the registration
    directory: str  # the directory URL it was registered at


def path(data_dir: Path) -> Path:
    return data_dir / "acme" / ACCOUNT_NAME


class AccountError(Exception):
    """One sentence: the account file is there but cannot be read."""


def read(data_dir: Path) -> Account | None:
    """None for no account yet, or a file that holds none (corrupt): registering again costs one request. A file
    we cannot open (permissions) raises AccountError: registering anew on every run would spend the CA's limit on
    new accounts, and lose the one we have."""
    where = path(data_dir)
    try:
        text = where.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not text"
        raise AccountError(f"cannot read the ACME account {where}: {reason or error}") from None
    try:
        found = json.loads(text)
        key = serialization.load_pem_private_key(found["key"].encode(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            return None
        return Account(key, str(found["url"]), str(found["directory"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def write(data_dir: Path, account: Account) -> None:
    target = state.directory(data_dir) / ACCOUNT_NAME
    pem = account.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    text = json.dumps({"key": pem.decode(), "url": account.url, "directory": account.directory}, indent=1)
    files.replace(target, text.encode() + b"\n", 0o600, files.owner(data_dir))


def network(config: Config, key: ec.EllipticCurvePrivateKey) -> Network:
    ca = config.settings.acme.directory_ca
    verify: bool | str = str(config.data_dir / ca) if ca else True  # an absolute path stays as it is
    return Network(
        JWKEC(key=key),
        alg=ES256,
        verify_ssl=verify,  # type: ignore[arg-type]  # requests' verify: True or a CA bundle's path
        user_agent=USER_AGENT,
        timeout=TIMEOUT,
    )


class RateLimited(Exception):
    """The CA's rateLimited problem, with the seconds its Retry-After asked us to wait (None: it did not say)."""

    def __init__(self, detail: str, retry_after: float | None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class Network(client.ClientNetwork):
    """Raises RateLimited for a rate limit: its Retry-After says when to try again, which the acme package's error
    (the problem document alone) does not carry."""

    def _check_response(self, response: Any, content_type: str | None = None) -> Any:  # type: ignore[override]
        try:
            return super()._check_response(response, content_type)
        except messages.Error as error:
            if error.typ != RATE_LIMITED:
                raise
            said = response.headers.get("Retry-After")
            raise RateLimited(error.detail or error.typ, _seconds(said) if said else None) from None


def _seconds(retry_after: str) -> float | None:
    """Retry-After (RFC 9110 §10.2.3) as seconds from now: a number of seconds, or an HTTP date; at most
    state.LONGEST_WAIT, since a typo or garbage there must not stop every renewal until the certificate expires."""
    text = retry_after.strip()
    if text.isascii() and text.isdigit():
        return min(float(text), state.LONGEST_WAIT)
    try:
        when = email.utils.parsedate_to_datetime(text)
        seconds = when.timestamp() - time.time()
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    return min(max(0.0, seconds), state.LONGEST_WAIT)


def client_for(config: Config) -> client.ClientV2:
    """A client signed in as our account at the configured directory, registered first if there is none there yet
    (with the email as contact, agreeing to the CA's terms of service)."""
    settings = config.settings.acme
    found = read(config.data_dir)
    if found is not None and found.directory != settings.directory:
        found = None
    key = found.key if found is not None else ec.generate_private_key(ec.SECP256R1())
    net = network(config, key)
    acme = client.ClientV2(client.ClientV2.get_directory(settings.directory, net), net)
    if found is not None:
        # the account as the CA has it, found by its key: one the CA forgot (a test CA restarted) or that was
        # deactivated (refused as unauthorized, RFC 8555 §7.3.6) gets a new registration, with a new key since the
        # old one stays tied to the dead account, rather than failing every renewal after
        try:
            known = acme.query_registration(messages.RegistrationResource(uri=found.url, body=messages.Registration()))
        except messages.Error as error:
            if error.typ not in (ACCOUNT_GONE, UNAUTHORIZED):
                raise
            why = error.detail or error.typ
        else:
            if known.body.status != messages.STATUS_DEACTIVATED:
                if known.uri != found.url:
                    write(config.data_dir, Account(key, known.uri, settings.directory))
                return acme
            why = "deactivated"
        log.event("acme_account_gone", directory=settings.directory, account=found.url, why=why)
        key = ec.generate_private_key(ec.SECP256R1())
        net = network(config, key)
        acme = client.ClientV2(acme.directory, net)
    registered = acme.new_account(
        messages.NewRegistration.from_data(email=settings.email, terms_of_service_agreed=True)
    )
    write(config.data_dir, Account(key, registered.uri, settings.directory))
    log.event("acme_registered", directory=settings.directory, account=registered.uri)
    return acme
