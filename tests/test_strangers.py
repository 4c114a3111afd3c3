"""What strangers send the site, fuzzed: a cookie, a query, a form's fields, a Range or an Accept-Encoding
header get the module's own refusal (a readable page), never another exception (a 500)."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from jitaku.web.comment_tokens import CommentTokens, TokenRefused
from jitaku.web.comments import FIELDS, Refused, checked_fields
from jitaku.web.csrf import COOKIE as CSRF_COOKIE
from jitaku.web.csrf import Token
from jitaku.web.page_cache import _accepts_gzip
from jitaku.web.ranges import UNSATISFIABLE, byte_range

TOKENS = CommentTokens("k" * 64)
NOW = 1_800_000_000.0
# Text as a stranger sends it: digits of any script, separators, and anything else
TEXT = st.text(alphabet=st.sampled_from("0123456789²٢.-=,;é \t") | st.characters(), max_size=60)
HEADER = st.binary(max_size=60) | st.text(alphabet="bytes=-0123456789, ;q.gzip*", max_size=60).map(str.encode)


@settings(max_examples=300, deadline=None)
@given(token=TEXT | st.builds(lambda a, b, c: f"{a}.{b}.{c}", TEXT, TEXT, TEXT))
def test_a_form_token_from_a_cookie_is_ours_or_refused(token: str) -> None:
    try:
        TOKENS.nonce(token, NOW)
    except TokenRefused:
        pass


@settings(max_examples=300, deadline=None)
@given(until=TEXT, signature=TEXT, action=TEXT)
def test_a_moderation_links_query_is_valid_or_not(until: str, signature: str, action: str) -> None:
    assert TOKENS.link_valid(1, action, until, signature, NOW) is False


@settings(max_examples=300, deadline=None)
@given(sent=TEXT)
def test_a_csrf_field_matches_its_cookie_or_not(sent: str) -> None:
    scope = {"type": "http", "headers": [(b"cookie", f"{CSRF_COOKIE}={'A' * 43}".encode())]}
    assert Token(b"k" * 32, scope).matches(sent) is False


@settings(max_examples=300, deadline=None)
@given(fields=st.fixed_dictionaries({}, optional={name: TEXT for name in FIELDS}))
@example(fields={"name": "Hana", "email": "hana@reader.test", "url": "http://[::1/", "body": "x"})
@example(fields={"name": "Hana", "email": "hana@reader.test", "url": "http://a\uff03b/", "body": "x"})
def test_a_comment_forms_fields_are_taken_or_refused(fields: dict[str, str]) -> None:
    try:
        checked = checked_fields(fields, 1000)
    except Refused:
        return
    assert checked["name"] and checked["body"]


@settings(max_examples=300, deadline=None)
@given(header=HEADER, size=st.integers(0, 10**12))
def test_a_range_header_is_one_range_inside_the_file_or_not_one(header: bytes, size: int) -> None:
    part = byte_range(header, size)
    if part is not None and part != UNSATISFIABLE:
        first, last = part
        assert 0 <= first <= last < size


@settings(max_examples=300, deadline=None)
@given(header=HEADER)
def test_an_accept_encoding_header_takes_gzip_or_not(header: bytes) -> None:
    assert _accepts_gzip(header) in (True, False)


def test_a_number_of_thousands_of_digits_is_past_the_end() -> None:
    """int() refuses a string of more than 4,300 digits: a header that long was a 500."""
    assert byte_range(b"bytes=" + b"1" * 5000 + b"-", 100) == UNSATISFIABLE
    assert byte_range(b"bytes=0-" + b"9" * 5000, 100) == (0, 99)
    assert byte_range(b"bytes=-" + b"9" * 5000, 100) == (0, 99)
