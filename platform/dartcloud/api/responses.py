"""JSON responses, request parsing helpers and the error handlers."""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from ..errors import BadRequest, DartCloudError, PayloadTooLarge, UnsupportedMediaType

logger = logging.getLogger(__name__)

MAX_JSON_BYTES = 64 * 1024

_HTTP_CODES = {
    400: ("bad_request", "the request is malformed"),
    404: ("not_found", "no route matches this path; see the API section of the README"),
    405: ("method_not_allowed", "this path does not accept the method {method}"),
}


def json_response(document: Any, status_code: int = 200,
                  headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(document, status_code=status_code, headers=headers)


def error_response(status_code: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}},
                        status_code=status_code, headers=headers)


def is_json_content_type(request: Request) -> bool:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


async def read_body(request: Request, max_bytes: int, *, limit_message: str) -> bytes:
    """Read the body, raising 413 as soon as it passes `max_bytes`."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(limit_message)

    chunks = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLarge(limit_message)
            chunks.append(chunk)
    except ClientDisconnect:
        raise BadRequest("the request body was cut short by the client") from None
    return b"".join(chunks)


def parse_json(body: bytes) -> tuple[str, Any]:
    """Decode `body` as UTF-8 JSON and return its text and value, or raise 400."""
    try:
        text = body.decode("utf-8")
        return text, json.loads(text)
    except RecursionError:
        raise BadRequest("the body nests arrays or objects deeper than the parser allows; "
                         "flatten it", code="malformed_json") from None
    except ValueError:
        raise BadRequest("the body is not valid UTF-8 JSON; send a JSON value such as "
                         '{"name": "Dart"}', code="malformed_json") from None


async def read_json_object(request: Request) -> dict:
    """Parse a JSON object body, with 415 for another content type and 400 for bad JSON."""
    if not is_json_content_type(request):
        raise UnsupportedMediaType("send the body as JSON with the header "
                                   "`Content-Type: application/json`")
    body = await read_body(request, MAX_JSON_BYTES,
                           limit_message=f"the JSON body is larger than {MAX_JSON_BYTES} bytes")
    _, document = parse_json(body)
    if not isinstance(document, dict):
        raise BadRequest("the body must be a JSON object", code="malformed_json")
    return document


async def handle_platform_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, DartCloudError)
    if error.status_code < 500:
        return error_response(error.status_code, error.code, error.message, error.headers)

    # A platform fault's details (engine URLs, container ids) are for the operator.
    logger.error("%s %s failed: %s", request.method, request.url.path, error.message,
                 extra={"action": "request.error", "code": error.code})
    return error_response(error.status_code, error.code,
                          "the platform failed to handle this request; retry later, and if it "
                          "keeps failing, the operator's log has the details", error.headers)


async def handle_http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    code, message = _HTTP_CODES.get(error.status_code, ("http_error", str(error.detail)))
    return error_response(error.status_code, code, message.format(method=request.method),
                          dict(error.headers or {}))


def internal_error_response() -> JSONResponse:
    return error_response(500, "internal_error",
                          "the platform failed to handle this request; the operator's log has "
                          "the details")


EXCEPTION_HANDLERS = {
    DartCloudError: handle_platform_error,
    HTTPException: handle_http_error,
}
