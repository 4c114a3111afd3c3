"""The MX's own DKIM verification and DMARC reading (mail/dkim_verify.py, mail/dmarc.py) against the
reference, authheaders with dkimpy: over a corpus signed by Perl Mail::DKIM and dkimpy, and over
random whitespace, both write the same Authentication-Results; the common case never reaches dkimpy."""

from __future__ import annotations

import asyncio
import base64
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import authheaders
import dkim
import dns.asyncresolver
import dns.resolver
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from dkim.canonicalization import Relaxed, Simple
from dkim.util import InvalidTagValueList, parse_tag_value
from dnslib import QTYPE, RR, TXT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jitaku import resolver
from jitaku.mail import authcheck, dkim_verify, dmarc
from tests.peers import Zone

SIGNER = Path(__file__).parent / "integration" / "dkim_sign.pl"
HOST = "mx.example.test"
IP = "192.0.2.7"
MESSAGE = (
    b"From: Carol <carol@remote.test>\r\n"
    b"To: alice@example.test\r\n"
    b"Subject: a signed\r\n\tmessage,  folded  \r\n"
    b"Date: Wed, 25 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <1@remote.test>\r\n"
    b"X-Tag: first\r\n"
    b"X-Tag:   second\t one\r\n"
    b"\r\n"
    b"Hello  from a\tsigned message. \r\n"
    b"Second line\t\r\n"
    b"\r\n"
    b"\r\n"
)


def _pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )


def _der(key: rsa.RSAPrivateKey) -> bytes:
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(public)


class Keys:
    """The signers' keys; their records are published under remote.test by `zone`."""

    def __init__(self, tmp: Path) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ed = ed25519.Ed25519PrivateKey.generate()
        self.path = tmp / "s1.key"
        self.path.write_bytes(_pem(self.rsa))

    def records(self) -> dict[str, bytes]:
        p = _der(self.rsa)
        ed = self.ed.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {
            "s1": b"v=DKIM1; k=rsa; p=" + p,
            "s_1": b"v=DKIM1; k=rsa; p=" + p,
            "testing": b"v=DKIM1; k=rsa; t=y; h=sha1:sha256; p=" + p,
            "strict": b"v=DKIM1; k=rsa; t=s; p=" + p,
            "sha1only": b"v=DKIM1; k=rsa; h=sha1; p=" + p,
            "service": b"v=DKIM1; k=rsa; s=email; p=" + p,
            "revoked": b"v=DKIM1; k=rsa; p=",
            "wrong": b"v=DKIM1; k=rsa; p=" + _der(self.other),
            "garbage": b"v=DKIM1; k=rsa; p=bm90IGEga2V5",
            "badversion": b"v=DKIM2; k=rsa; p=" + p,
            "unknownk": b"v=DKIM1; k=foo; p=" + p,
            "notags": b"hello world",
            "ed": b"v=DKIM1; k=ed25519; p=" + base64.b64encode(ed),
        }


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return Keys(tmp_path_factory.mktemp("dkim"))


@pytest.fixture
def zone(dns_zone: tuple[Zone, int], keys: Keys, monkeypatch: pytest.MonkeyPatch) -> Iterator[Zone]:
    served, port = dns_zone
    served.add("test. 300 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 30")
    served.add('remote.test. 300 IN TXT "v=spf1 ip4:192.0.2.7 -all"')
    served.add('_dmarc.remote.test. 300 IN TXT "v=DMARC1; p=reject"')
    served.add('other.test. 300 IN TXT "v=spf1 -all"')
    served.add('_dmarc.other.test. 300 IN TXT "v=DMARC1; p=quarantine; adkim=s"')
    for selector, record in keys.records().items():
        chunks = [record[i : i + 255] for i in range(0, len(record), 255)]
        served.records.append(RR(f"{selector}._domainkey.remote.test.", QTYPE.TXT, ttl=300, rdata=TXT(chunks)))
    monkeypatch.setattr(dns.resolver, "default_resolver", None)
    monkeypatch.setattr(dns.asyncresolver, "default_resolver", None)
    resolver.configure((resolver.Nameserver("127.0.0.1", port),))
    yield served


def reference(message: bytes, mail_from: str = "carol@remote.test") -> str:
    """What the MX wrote before it had its own verification: authheaders with dkimpy throughout."""
    signed = re.search(rb"(?im)^dkim-signature:", authcheck.headers.header_section(message)) is not None
    try:
        header = authheaders.authenticate_message(
            message, HOST, spf=True, dkim=signed, dmarc=True, ip=IP, mail_from=mail_from, helo="mx.remote.test"
        )
    except Exception:  # what the MX writes when authheaders gives up on a message
        if re.search(rb"(?im)^from[ \t]*:", authcheck.headers.header_section(message)):
            return f"Authentication-Results: {HOST}; none"
        # authheaders' DMARC check fails on a message with no From field: ours says so, and keeps SPF and DKIM
        try:
            header = authheaders.authenticate_message(
                message, HOST, spf=True, dkim=signed, dmarc=False, ip=IP, mail_from=mail_from, helo="mx.remote.test"
            )
        except Exception:  # given up on for another reason too
            return f"Authentication-Results: {HOST}; none"
        header = f"{header}; {dmarc.NO_FROM}"
    if not signed:
        header = header.replace("; dmarc=", "; dkim=none; dmarc=", 1)
    return str(header)


def ours(message: bytes, mail_from: str = "carol@remote.test") -> str:
    header = asyncio.run(authcheck.authentication_results(message, HOST, IP, mail_from, "mx.remote.test"))
    return header.decode().removesuffix("\r\n")


def perl(keys: Keys, message: bytes, method: str = "relaxed", selector: str = "s1") -> bytes:
    return subprocess.run(
        ["perl", str(SIGNER), "remote.test", selector, str(keys.path), method],
        input=message,
        check=True,
        capture_output=True,
    ).stdout


def dkimpy(
    keys: Keys,
    message: bytes,
    canonicalize: tuple[bytes, bytes] = (b"relaxed", b"relaxed"),
    selector: bytes = b"s1",
    include: list[bytes] | None = None,
    **options: object,
) -> bytes:
    return (
        dkim.sign(
            message,
            selector,
            b"remote.test",
            _pem(keys.rsa),
            canonicalize=canonicalize,
            include_headers=include or [b"from", b"to", b"subject", b"date", b"message-id"],
            **options,  # type: ignore[arg-type]
        )
        + message
    )


def ed25519_signed(keys: Keys, message: bytes) -> bytes:
    seed = keys.ed.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    signature = dkim.sign(message, b"ed", b"remote.test", base64.b64encode(seed), signature_algorithm=b"ed25519-sha256")
    return signature + message


def corpus(keys: Keys) -> dict[str, bytes]:
    """Name -> message: each a case where a fast path could part from dkimpy."""
    relaxed = perl(keys, MESSAGE)
    tagged = dkimpy(keys, MESSAGE, include=[b"from", b"from", b"x-tag", b"x-tag", b"x-tag", b"subject", b"cc"])
    cases = {
        "perl relaxed/relaxed": relaxed,
        "perl simple/simple": perl(keys, MESSAGE, "simple"),
        "perl relaxed/simple": perl(keys, MESSAGE, "relaxed/simple"),
        "perl simple/relaxed": perl(keys, MESSAGE, "simple/relaxed"),
        "dkimpy relaxed/relaxed": dkimpy(keys, MESSAGE),
        "dkimpy simple/simple": dkimpy(keys, MESSAGE, (b"simple", b"simple")),
        "dkimpy relaxed/simple": dkimpy(keys, MESSAGE, (b"relaxed", b"simple")),
        "dkimpy sha1": dkimpy(keys, MESSAGE, signature_algorithm=b"rsa-sha1"),
        "dkimpy l=": dkimpy(keys, MESSAGE, length=True),
        "dkimpy l= with more body": dkimpy(keys, MESSAGE, length=True) + b"appended by a list\r\n",
        "dkimpy i=": dkimpy(keys, MESSAGE, identity=b"carol@mail.remote.test"),
        "selector with an underscore": dkimpy(keys, MESSAGE, selector=b"s_1"),
        "repeated and over-signed headers": tagged,
        "repeated header removed": tagged.replace(b"X-Tag: first\r\n", b""),
        "header added above an over-signed one": tagged.replace(b"From: Carol", b"X-Tag: third\r\nFrom: Carol"),
        "second From added": tagged.replace(b"To: alice", b"From: mallory@remote.test\r\nTo: alice"),
        "ed25519": ed25519_signed(keys, MESSAGE),
        "empty body": perl(keys, MESSAGE.split(b"\r\n\r\n")[0] + b"\r\n\r\n"),
        "empty body, simple": dkimpy(keys, MESSAGE.split(b"\r\n\r\n")[0] + b"\r\n\r\n", (b"simple", b"simple")),
        "no trailing CRLF": perl(keys, MESSAGE.rstrip(b"\r\n")),
        "whitespace changed in transit": relaxed.replace(b"Hello  from", b"Hello \t from"),
        "body tampered": relaxed.replace(b"Hello", b"Jello"),
        "header tampered": relaxed.replace(b"<1@remote.test>", b"<2@remote.test>"),
        "signed header tampered": relaxed.replace(b"Subject: a signed", b"Subject: a Signed"),
        "b= tampered": relaxed.replace(b"b=", b"b=AAAA", 1).replace(b"bh=AAAA", b"bh="),
        "bh= mangled": relaxed.replace(b"bh=", b"bh=!!", 1),
        "two signatures, good on top": dkimpy(keys, perl(keys, MESSAGE)),
        "two signatures, bad on top": dkimpy(keys, perl(keys, MESSAGE), selector=b"nope"),
        "two signatures, bad below": perl(keys, dkimpy(keys, MESSAGE, selector=b"nope")),
        "missing key": dkimpy(keys, MESSAGE, selector=b"nope"),
        "revoked key": dkimpy(keys, MESSAGE, selector=b"revoked"),
        "another key": dkimpy(keys, MESSAGE, selector=b"wrong"),
        "unparsable key": dkimpy(keys, MESSAGE, selector=b"garbage"),
        "key of another version": dkimpy(keys, MESSAGE, selector=b"badversion"),
        "key of an unknown type": dkimpy(keys, MESSAGE, selector=b"unknownk"),
        "key record without tags": dkimpy(keys, MESSAGE, selector=b"notags"),
        "key in testing": dkimpy(keys, MESSAGE, selector=b"testing"),
        "key for exact i=": dkimpy(keys, MESSAGE, selector=b"strict", identity=b"carol@mail.remote.test"),
        "key for sha1 only": dkimpy(keys, MESSAGE, selector=b"sha1only"),
        "key for email": dkimpy(keys, MESSAGE, selector=b"service"),
        "expired x=": relaxed.replace(b"a=rsa-sha256;", b"a=rsa-sha256; x=1000000000;"),
        "x= before t=": relaxed.replace(b"a=rsa-sha256;", b"a=rsa-sha256; t=4000000000; x=3900000000;"),
        "future t=": relaxed.replace(b"a=rsa-sha256;", b"a=rsa-sha256; t=4000000000;"),
        "x= far ahead": relaxed.replace(b"a=rsa-sha256;", b"a=rsa-sha256; x=4000000000;"),
        "z= copied headers": relaxed.replace(b"a=rsa-sha256;", b"a=rsa-sha256; z=From:carol@remote.test;"),
        "unknown algorithm": relaxed.replace(b"a=rsa-sha256", b"a=rsa-sha512"),
        "duplicate tag": relaxed.replace(b"a=rsa-sha256;", b"a=rsa-sha256; d=remote.test;"),
        "malformed tag list": relaxed.replace(b"a=rsa-sha256;", b"a=rsa-sha256; nonsense;"),
        "i= outside d=": relaxed.replace(b"a=rsa-sha256;", b"a=rsa-sha256; i=@elsewhere.test;"),
        "bare LF in the body": relaxed + b"a bare\nline feed\r\n",
        "mbox From line": b"From carol@remote.test Wed Nov 25 10:00:00 2026\r\n" + relaxed,
        "unsigned": MESSAGE,
        "unsigned, DMARC fails": MESSAGE.replace(b"carol@remote.test", b"carol@other.test"),
        "signed, From elsewhere": dkimpy(keys, MESSAGE.replace(b"carol@remote.test", b"carol@other.test")),
        "two From addresses": MESSAGE.replace(b"From: Carol <carol@remote.test>", b"From: a@remote.test, b@other.test"),
        "no From": MESSAGE.replace(b"From: Carol <carol@remote.test>\r\n", b""),
        "From without a domain": MESSAGE.replace(b"<carol@remote.test>", b"<carol>"),
    }
    return cases


@pytest.fixture(scope="module")
def cases(keys: Keys) -> dict[str, bytes]:
    return corpus(keys)


def test_the_fast_path_writes_what_authheaders_writes(zone: Zone, cases: dict[str, bytes]) -> None:
    differ = {}
    for name, message in cases.items():
        for mail_from in ("carol@remote.test", "carol@other.test", ""):
            expected, got = reference(message, mail_from), ours(message, mail_from)
            if got != expected:
                differ[f"{name} (from {mail_from})"] = (expected, got)
    assert differ == {}


def test_the_corpus_covers_every_verdict(zone: Zone, cases: dict[str, bytes]) -> None:
    """The corpus above is worth comparing only if its cases end in every result authheaders writes."""
    results = {
        match.group(1)
        for message in cases.values()
        for match in [re.search(r"dkim=(\w+)", reference(message))]
        if match
    }
    assert {"pass", "fail", "none"} <= results


def _refuse(*args: object, **kwargs: object) -> bool:
    raise AssertionError("dkimpy was asked")


def without_dkimpy(monkeypatch: pytest.MonkeyPatch) -> None:
    """dkimpy's parsing or verifying would now be a failure: the common case must not need it."""
    monkeypatch.setattr(dkim.DKIM, "verify", _refuse)
    monkeypatch.setattr(dkim, "rfc822_parse", _refuse)
    monkeypatch.setattr(authheaders, "rfc822_parse", _refuse)


@pytest.mark.parametrize(
    "name",
    [
        "perl relaxed/relaxed",
        "perl simple/simple",
        "dkimpy relaxed/simple",
        "dkimpy i=",
        "selector with an underscore",
        "repeated and over-signed headers",
        "second From added",
        "body tampered",
        "signed header tampered",
        "two signatures, good on top",
        "key in testing",
        "missing key",
        "revoked key",
        "unparsable key",
        "unsigned",
        "signed, From elsewhere",
    ],
)
def test_common_mail_is_verified_without_dkimpy(
    zone: Zone, cases: dict[str, bytes], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = cases[name]
    expected = reference(message)
    without_dkimpy(monkeypatch)
    assert ours(message) == expected


def test_a_good_signature_passes_and_a_tampered_one_fails_without_dkimpy(
    zone: Zone, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = perl(keys, MESSAGE)
    without_dkimpy(monkeypatch)
    assert "dkim=pass header.d=remote.test" in ours(good)
    assert "dmarc=pass" in ours(good)
    assert "dkim=fail" in ours(good.replace(b"Hello", b"Jello"))


_WSP = st.sampled_from([b" ", b"\t", b"  ", b" \t ", b""])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    subject_space=_WSP,
    tag_space=_WSP,
    body_spaces=st.lists(_WSP, min_size=4, max_size=4),
    trailing=st.sampled_from([b"", b"\r\n", b"\r\n\r\n\r\n", b" \r\n\t\r\n"]),
    canonicalize=st.sampled_from([(b"relaxed", b"relaxed"), (b"simple", b"simple"), (b"relaxed", b"simple")]),
    after_signing=st.booleans(),
)
def test_random_whitespace_gets_the_same_verdict(
    zone: Zone,
    keys: Keys,
    subject_space: bytes,
    tag_space: bytes,
    body_spaces: list[bytes],
    trailing: bytes,
    canonicalize: tuple[bytes, bytes],
    after_signing: bool,
) -> None:
    """Whitespace where relaxed canonicalization folds it, before signing or added on the way."""
    a, b, c, d = body_spaces

    def spaced(message: bytes) -> bytes:
        head, body = message.split(b"\r\n\r\n", 1)
        head = head.replace(b"Subject:", b"Subject:" + subject_space).replace(b"X-Tag:", b"X-Tag:" + tag_space)
        body = body.replace(b"Hello ", b"Hello" + a + b" ").replace(b"Second", c + b"Second" + b)
        return head + b"\r\n\r\n" + body.rstrip(b"\r\n") + d + b"\r\n" + trailing

    include = [b"from", b"subject", b"x-tag", b"x-tag"]
    message = (
        spaced(dkimpy(keys, MESSAGE, canonicalize, include=include))
        if after_signing
        else dkimpy(keys, spaced(MESSAGE), canonicalize, include=include)
    )
    assert ours(message) == reference(message)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from([b"b", b"=", b";", b" ", b"\t", b"\r\n", b"\n", b"\r", b"A", b"+", b"/", b"h", b"x"]),
        max_size=30,
    )
)
def test_a_tag_list_is_read_as_dkimpy_reads_it(parts: list[bytes]) -> None:
    value = b"".join(parts)
    assert dkim_verify._without_b(value) == dkim.RE_BTAG.sub(rb"\1", value)
    try:
        reference: dict[bytes, bytes] | None = parse_tag_value(value)
    except InvalidTagValueList:
        reference = None
    assert dkim_verify._tag_list(value) == reference


_NOISE = st.sampled_from(
    [b" ", b"\t", b"\r\n", b"\r\n ", b"\n", b"\r", b":", b";", b"=", b"b=", b"\xe9", b"From: x@other.test\r\n"]
    + [b"\r\n\r\n", b"From ", b"h=", b"x=1;", b"DKIM-Signature: v=1\r\n"]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(min_value=0), _NOISE), min_size=1, max_size=3), perl_signed=st.booleans())
def test_a_message_damaged_anywhere_gets_the_same_verdict(
    zone: Zone, cases: dict[str, bytes], edits: list[tuple[int, bytes]], perl_signed: bool
) -> None:
    """Bytes put anywhere in a signed message, header or body: whichever reads it, the verdict is the same."""
    message = cases["perl relaxed/relaxed" if perl_signed else "repeated and over-signed headers"]
    for position, noise in edits:
        at = position % (len(message) + 1)
        message = message[:at] + noise + message[at:]
    assert ours(message) == reference(message)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from([b" ", b"\t", b"\r\n", b"\r", b"\n", b"a", b"  ", b"\x0b"]), max_size=40))
def test_a_body_is_canonicalized_as_dkimpy_canonicalizes_it(parts: list[bytes]) -> None:
    body = b"".join(parts)
    assert dkim_verify._relaxed_body(body) == Relaxed.canonicalize_body(body)
    assert dkim_verify._strip_trailing_lines(body) == Simple.canonicalize_body(body)


def test_a_message_without_from_keeps_its_spf_and_dkim_verdicts_and_dmarc_says_why_it_cannot_apply(zone: Zone) -> None:
    header = ours(b"To: alice@example.test\r\nSubject: no author\r\n\r\nHello\r\n")
    assert header == (
        f'Authentication-Results: {HOST}; spf=pass reason="sender SPF authorized" smtp.helo=mx.remote.test '
        "smtp.mailfrom=carol@remote.test; dkim=none; "
        "dmarc=permerror (no From field) policy.dmarc=none"
    )
