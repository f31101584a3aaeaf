"""JWT access tokens (HS256) and the secret that signs them."""

from __future__ import annotations

import logging
import os
import secrets
import time
import uuid
from pathlib import Path

import jwt

logger = logging.getLogger(__name__)

ALGORITHM = "HS256"
MIN_SECRET_BYTES = 32
SECRET_FILE_NAME = "jwt_secret"


class InvalidToken(Exception):
    """The token is malformed, forged, expired or signed with another algorithm."""


def issue_token(user_id: uuid.UUID, secret: str, ttl: int) -> str:
    now = int(time.time())
    claims = {"sub": str(user_id), "iat": now, "exp": now + ttl}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def read_token(token: str, secret: str) -> uuid.UUID:
    """Verify the token and return its subject's user id, or raise `InvalidToken`."""
    try:
        # Pinning the algorithm list rejects `alg: none` and every other algorithm.
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM],
                            options={"require": ["sub", "iat", "exp"]})
        return uuid.UUID(claims["sub"])
    except jwt.ExpiredSignatureError:
        raise InvalidToken("the token has expired; log in again to get a new one") from None
    except (jwt.InvalidTokenError, ValueError, TypeError):
        raise InvalidToken("the token is invalid; log in again to get a new one") from None


def load_or_create_secret(data_dir: Path) -> str:
    """Return the secret kept in `data_dir`, creating a random one on first use.

    Keeping it on disk lets tokens survive a restart. The file is created with
    mode 0600 and never overwritten.
    """
    path = data_dir / SECRET_FILE_NAME
    if path.exists():
        secret = path.read_text().strip()
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"{path} contains a secret shorter than {MIN_SECRET_BYTES} bytes; "
                             "delete the file to generate a new one, or set JWT_SECRET")
        return secret

    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(secret + "\n")
    logger.warning("JWT_SECRET is not set: generated a random token secret and stored it in %s; "
                   "set JWT_SECRET to manage it yourself", path,
                   extra={"action": "auth.secret_generated"})
    return secret
