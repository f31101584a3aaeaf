"""Issuing and verifying JWTs, and keeping the generated secret."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest

from dartcloud.tokens import InvalidToken, issue_token, load_or_create_secret, read_token

SECRET = "k" * 64


def test_issued_token_reads_back():
    user_id = uuid.uuid4()

    assert read_token(issue_token(user_id, SECRET, 60), SECRET) == user_id


@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
def test_other_algorithms_are_rejected(algorithm):
    now = int(time.time())
    token = jwt.encode({"sub": str(uuid.uuid4()), "iat": now, "exp": now + 60}, SECRET, algorithm)

    with pytest.raises(InvalidToken):
        read_token(token, SECRET)


def test_expired_token_says_so():
    token = issue_token(uuid.uuid4(), SECRET, -10)

    with pytest.raises(InvalidToken) as raised:
        read_token(token, SECRET)

    assert "expired" in str(raised.value)


def test_secret_is_created_once(tmp_path):
    first = load_or_create_secret(tmp_path)
    second = load_or_create_secret(tmp_path)

    assert first == second
    assert len(first.encode()) >= 32
    assert (tmp_path / "jwt_secret").stat().st_mode & 0o777 == 0o600


def test_short_stored_secret_is_rejected(tmp_path):
    (tmp_path / "jwt_secret").write_text("short\n")

    with pytest.raises(ValueError) as raised:
        load_or_create_secret(tmp_path)

    assert "shorter than 32 bytes" in str(raised.value)
