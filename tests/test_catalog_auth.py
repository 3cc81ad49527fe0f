"""Passwords of catalogue users: salted PBKDF2, verified once per process and password."""

import pytest

from catalog_registry import auth
from catalog_registry.errors import Invalid


def test_a_password_is_stored_salted_and_checked():
    stored = auth.hash_password("平台-secret-1")
    assert stored.startswith("pbkdf2_sha256$200000$") and "平台-secret-1" not in stored
    assert stored != auth.hash_password("平台-secret-1")  # a fresh salt each time
    assert auth.check_password("平台-secret-1", stored)
    assert not auth.check_password("平台-secret-2", stored)
    assert not auth.check_password("平台-secret-1", "md5$whatever")


def test_a_short_password_is_refused():
    with pytest.raises(Invalid, match="at least 8 characters"):
        auth.hash_password("short")


def test_each_request_does_not_pay_the_key_derivation_again(monkeypatch):
    # the REST API checks the password on every request: derived once, then remembered
    stored = auth.hash_password("console-secret")
    calls = []
    slow = auth._slow_check
    monkeypatch.setattr(auth, "_slow_check", lambda p, s: calls.append(p) or slow(p, s))
    assert all(auth.check_password("console-secret", stored) for _ in range(5))
    assert calls == ["console-secret"]
    # a wrong password is never remembered: every guess costs the full derivation
    assert not auth.check_password("console-guess", stored)
    assert not auth.check_password("console-guess", stored)
    assert calls == ["console-secret", "console-guess", "console-guess"]
    # a changed password (a new stored hash) is checked afresh
    assert not auth.check_password("console-secret", auth.hash_password("console-new-1"))
