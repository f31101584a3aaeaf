"""Registration, login and bearer-token checks over real HTTP."""

from __future__ import annotations

import base64
import json
import time
import uuid

import jwt
import pytest

from support import register


def _segment(document: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()


def test_register_returns_user_and_token(server):
    with server.client() as client:
        response = client.post("/api/auth/register",
                               json={"email": "Ada@Example.com", "password": "analytical"})

    assert response.status_code == 201
    body = response.json()
    assert body["user"]["email"] == "Ada@Example.com"
    assert uuid.UUID(body["user"]["id"])
    assert body["token"].count(".") == 2


def test_register_duplicate_email_any_case(server):
    with server.client() as client:
        first = register(client)
        response = client.post("/api/auth/register",
                               json={"email": first["email"].upper(), "password": "other password"})

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "email_taken"


@pytest.mark.parametrize("document, code", [
    ({"email": "not-an-email", "password": "long enough"}, "invalid_email"),
    ({"email": "a@b", "password": "long enough"}, "invalid_email"),
    ({"email": "", "password": "long enough"}, "invalid_email"),
    ({"password": "long enough"}, "invalid_email"),
    ({"email": "short@example.com", "password": "1234567"}, "invalid_password"),
    ({"email": "long@example.com", "password": "x" * 73}, "invalid_password"),
    ({"email": "multibyte@example.com", "password": "é" * 37}, "invalid_password"),
    ({"email": "nopass@example.com"}, "invalid_password"),
    ({"email": ["list@example.com"], "password": "long enough"}, "invalid_email"),
    ({"email": "nul\u0000@example.com", "password": "long enough"}, "invalid_email"),
    ({"email": "tab\t@example.com", "password": "long enough"}, "invalid_email"),
    ({"email": "nulpass@example.com", "password": "long\u0000enough"}, "invalid_password"),
])
def test_register_rejects_invalid_input(server, document, code):
    with server.client() as client:
        response = client.post("/api/auth/register", json=document)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == code


@pytest.mark.parametrize("document, field", [
    ({"email": 5, "password": "long enough"}, "email"),
    ({"email": "typed@example.com", "password": 12345678}, "password"),
])
def test_register_wrong_type_is_named(server, document, field):
    with server.client() as client:
        response = client.post("/api/auth/register", json=document)

    assert response.status_code == 422
    assert response.json()["error"]["message"] == f"the field `{field}` must be a string"


def test_register_accepts_72_byte_password(server):
    with server.client() as client:
        account = register(client, password="p" * 72)
        response = client.post("/api/auth/login",
                               json={"email": account["email"], "password": "p" * 72})

    assert response.status_code == 200


def test_login_returns_token_for_user(server):
    with server.client() as client:
        account = register(client)
        response = client.post("/api/auth/login",
                               json={"email": account["email"].upper(),
                                     "password": account["password"]})

    assert response.status_code == 200
    assert response.json()["user"]["id"] == account["user"]["id"]
    with server.client(response.json()["token"]) as authorized:
        assert authorized.get("/api/functions").status_code == 200


def test_login_failures_share_one_message(server):
    with server.client() as client:
        account = register(client)
        wrong_password = client.post("/api/auth/login",
                                     json={"email": account["email"], "password": "wrong password"})
        unknown_email = client.post("/api/auth/login",
                                    json={"email": "nobody@example.com", "password": "whatever1"})

    assert wrong_password.status_code == 401
    assert unknown_email.status_code == 401
    assert wrong_password.json() == unknown_email.json()


def test_password_hash_is_bcrypt(server, sql):
    with server.client() as client:
        account = register(client)

    stored = sql("SELECT password_hash FROM users WHERE id = $1", uuid.UUID(account["user"]["id"]))
    assert stored[0]["password_hash"].startswith("$2b$")
    assert account["password"] not in stored[0]["password_hash"]


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"[" * 50_000, b"\xff\xfe"])
def test_malformed_json_is_400(server, body):
    with server.client() as client:
        response = client.post("/api/auth/login", content=body,
                               headers={"Content-Type": "application/json"})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"


def test_login_with_nul_in_email_is_422(server):
    with server.client() as client:
        response = client.post("/api/auth/login",
                               json={"email": "a\u0000@example.com", "password": "whatever1"})

    assert response.status_code == 422


def test_wrong_content_type_is_415(server):
    with server.client() as client:
        response = client.post("/api/auth/register", data={"email": "a@b.co", "password": "x" * 9})

    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


def test_unknown_route_is_json_404(server):
    with server.client() as client:
        response = client.get("/api/nothing-here")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_wrong_method_is_json_405(server):
    with server.client() as client:
        response = client.put("/api/auth/login", json={})

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def _forged_tokens(secret: str, user_id: str) -> dict[str, str]:
    now = int(time.time())
    claims = {"sub": user_id, "iat": now, "exp": now + 600}
    header_none = _segment({"alg": "none", "typ": "JWT"})
    return {
        "bad signature": jwt.encode(claims, "another secret that is long enough!!", "HS256"),
        "alg none": f"{header_none}.{_segment(claims)}.",
        "alg HS512": jwt.encode(claims, secret, "HS512"),
        "expired": jwt.encode({**claims, "iat": now - 700, "exp": now - 100}, secret, "HS256"),
        "no exp": jwt.encode({"sub": user_id, "iat": now}, secret, "HS256"),
        "sub not a uuid": jwt.encode({**claims, "sub": "admin"}, secret, "HS256"),
        "unknown user": jwt.encode({**claims, "sub": str(uuid.uuid4())}, secret, "HS256"),
        "garbage": "not.a.token",
    }


def test_forged_tokens_are_401(server, user):
    tokens = _forged_tokens(server.settings.jwt_secret, user["user"]["id"])

    for case, token in tokens.items():
        with server.client(token) as client:
            response = client.get("/api/functions")
        assert response.status_code == 401, case
        assert response.json()["error"]["code"] == "invalid_token", case


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic abc", "token abc",
                                    "Bearer a b"])
def test_bad_authorization_header_is_401(server, header):
    headers = {} if header is None else {"Authorization": header}
    with server.client() as client:
        response = client.get("/api/functions", headers=headers)

    assert response.status_code == 401
    assert response.json()["error"]["code"] in ("missing_token", "malformed_token")
    assert response.headers["www-authenticate"] == "Bearer"


def test_token_of_deleted_user_is_401(server, sql):
    with server.client() as client:
        account = register(client)
    sql("DELETE FROM users WHERE id = $1", uuid.UUID(account["user"]["id"]))

    with server.client(account["token"]) as client:
        response = client.get("/api/functions")

    assert response.status_code == 401


def test_token_claims_and_lifetime(server, user):
    claims = jwt.decode(user["token"], server.settings.jwt_secret, algorithms=["HS256"])

    assert claims["sub"] == user["user"]["id"]
    assert claims["exp"] - claims["iat"] == server.settings.jwt_ttl
