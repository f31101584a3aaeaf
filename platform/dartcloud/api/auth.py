"""Registration, login and the bearer-token check used by every function route."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import passwords, tokens
from ..db import users as users_db
from ..errors import Conflict, InvalidInput, Unauthorized
from .responses import json_response, read_json_object

logger = logging.getLogger(__name__)

EMAIL = re.compile(r"[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+")
MAX_EMAIL_LENGTH = 254
LOGIN_FAILED = "the email or password is wrong"


def _credentials(document: dict) -> tuple[str, str]:
    email = document.get("email")
    password = document.get("password")
    if email is None or email == "":
        raise InvalidInput("the field `email` is missing; send an email address", code="invalid_email")
    if not isinstance(email, str):
        raise InvalidInput("the field `email` must be a string", code="invalid_email")
    if password is None or password == "":
        raise InvalidInput("the field `password` is missing", code="invalid_password")
    if not isinstance(password, str):
        raise InvalidInput("the field `password` must be a string", code="invalid_password")
    # PostgreSQL text cannot store NUL, and bcrypt implementations differ on
    # whether a NUL ends the password.
    if "\x00" in email:
        raise InvalidInput("the field `email` must not contain NUL characters", code="invalid_email")
    if "\x00" in password:
        raise InvalidInput("the field `password` must not contain NUL characters",
                           code="invalid_password")
    return email.strip(), password


async def register(request: Request) -> Response:
    state = request.app.state
    email, password = _credentials(await read_json_object(request))

    if len(email) > MAX_EMAIL_LENGTH or not EMAIL.fullmatch(email):
        raise InvalidInput(f"invalid email address {email[:MAX_EMAIL_LENGTH]!r}; "
                           "use the form name@example.com", code="invalid_email")
    if len(password) < passwords.MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"the password must have at least {passwords.MIN_PASSWORD_LENGTH} "
                           "characters", code="invalid_password")
    if len(password.encode()) > passwords.MAX_PASSWORD_BYTES:
        raise InvalidInput(f"the password must be at most {passwords.MAX_PASSWORD_BYTES} bytes "
                           "in UTF-8, because bcrypt ignores anything longer",
                           code="invalid_password")

    password_hash = await asyncio.to_thread(passwords.hash_password, password,
                                            state.settings.bcrypt_rounds)
    user = await users_db.insert_user(state.db, email, password_hash)
    if user is None:
        raise Conflict(f"an account with the email {email!r} already exists; log in instead",
                       code="email_taken")

    logger.info("user registered", extra={"action": "auth.register", "user_id": str(user["id"])})
    token = tokens.issue_token(user["id"], state.jwt_secret, state.settings.jwt_ttl)
    return json_response({"user": _user_json(user), "token": token}, status_code=201)


async def login(request: Request) -> Response:
    state = request.app.state
    email, password = _credentials(await read_json_object(request))

    user = await users_db.fetch_user_by_email(state.db, email)
    # An unknown email still costs one bcrypt check, so timing does not reveal which emails exist.
    password_hash = user["password_hash"] if user is not None else state.dummy_hash
    matches = len(password.encode()) <= passwords.MAX_PASSWORD_BYTES and await asyncio.to_thread(
        passwords.verify_password, password, password_hash)
    if user is None or not matches:
        logger.info("login failed", extra={"action": "auth.login_failed"})
        raise Unauthorized(LOGIN_FAILED, code="invalid_credentials")

    token = tokens.issue_token(user["id"], state.jwt_secret, state.settings.jwt_ttl)
    return json_response({"token": token, "user": _user_json(user)})


async def authenticate(request: Request) -> uuid.UUID:
    """Return the id of the user the bearer token belongs to, or raise 401."""
    header = request.headers.get("authorization")
    if header is None:
        raise Unauthorized("this route needs the header `Authorization: Bearer <token>`; "
                           "get a token from POST /api/auth/login", code="missing_token")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip() or " " in token.strip():
        raise Unauthorized("the Authorization header must be `Bearer <token>`",
                           code="malformed_token")

    try:
        user_id = tokens.read_token(token.strip(), request.app.state.jwt_secret)
    except tokens.InvalidToken as error:
        raise Unauthorized(str(error), code="invalid_token") from None
    if await users_db.fetch_user_by_id(request.app.state.db, user_id) is None:
        raise Unauthorized("the account of this token no longer exists", code="invalid_token")
    return user_id


def _user_json(user) -> dict:
    return {"id": str(user["id"]), "email": user["email"]}


routes = [
    Route("/api/auth/register", register, methods=["POST"]),
    Route("/api/auth/login", login, methods=["POST"]),
]
