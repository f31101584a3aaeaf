"""The platform's exception root and its mapping to HTTP statuses.

Every error response has one shape::

    {"error": {"code": "not_found", "message": "function not found ..."}}

`code` is stable and meant for programs; `message` is a sentence for people.
"""

from __future__ import annotations


class DartCloudError(Exception):
    """Root of the platform's errors; each subclass fixes an HTTP status and a code."""

    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.headers = headers or {}


class BadRequest(DartCloudError):
    status_code = 400
    code = "bad_request"


class Unauthorized(DartCloudError):
    status_code = 401
    code = "unauthorized"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message, code=code, headers={"WWW-Authenticate": "Bearer"})


class NotFound(DartCloudError):
    status_code = 404
    code = "not_found"


class Conflict(DartCloudError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(DartCloudError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(DartCloudError):
    status_code = 415
    code = "unsupported_media_type"


class InvalidInput(DartCloudError):
    status_code = 422
    code = "invalid_input"


class TooManyRequests(DartCloudError):
    status_code = 429
    code = "too_many_requests"


class EngineError(DartCloudError):
    """The Docker engine failed or did not respond: a platform fault, not the function's."""

    status_code = 502
    code = "engine_error"
