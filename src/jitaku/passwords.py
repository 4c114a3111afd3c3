"""Password hashing with argon2id; plain passwords never reach the database."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# OWASP's argon2id floor (19 MiB, t=2): a login costs a few tens of milliseconds.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)

# The hash of a password nobody knows, made with _hasher's parameters (tests/test_passwords.py checks): a user
# who does not exist, or has no password, is checked against it, so that a login costs the same whether the
# user exists or not (issue 15: 1 ms against 40-80 ms told strangers which users exist).
NOBODY = "$argon2id$v=19$m=19456,t=2,p=1$+Vl1cgj/vkTXcpPvM6sFBQ$WVJhyI+xo8kfFNIFptLux2BaZHcPs2J6HfszC5LrBOs"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether PASSWORD matches; with no hash (no such user) as slowly as with one, and never True."""
    try:
        return _hasher.verify(password_hash or NOBODY, password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False
