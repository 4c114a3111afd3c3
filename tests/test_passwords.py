"""passwords: an unknown user costs an argon2 check."""

from __future__ import annotations

from unittest import mock

from jitaku import passwords
from jitaku.passwords import NOBODY, hash_password, verify_password


def test_nobodys_hash_has_the_parameters_of_every_other() -> None:
    assert not passwords._hasher.check_needs_rehash(NOBODY)


def test_no_user_is_checked_against_nobodys_hash_and_never_succeeds() -> None:
    with mock.patch.object(passwords, "_hasher", mock.Mock(wraps=passwords._hasher)) as hasher:
        assert verify_password(None, "anything") is False
        assert verify_password("", "anything") is False
        assert [call.args[0] for call in hasher.verify.call_args_list] == [NOBODY, NOBODY]
        hasher.verify = mock.Mock(return_value=True)
        assert verify_password(None, "the password nobody knows") is False
    good = hash_password("secret")
    assert verify_password(good, "secret") and not verify_password(good, "wrong")
