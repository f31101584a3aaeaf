"""ASGI middleware that logs one line per request."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .responses import internal_error_response

logger = logging.getLogger("dartcloud.request")


class RequestLogMiddleware:
    """Log method, path, status and duration; never headers, query strings or bodies.

    It also turns an unexpected exception into the JSON 500 response, so that
    the crash is logged once, with its traceback, and never reaches uvicorn.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()
        status = 500
        status_sent = False

        async def send_with_status(message: Message) -> None:
            nonlocal status, status_sent
            if message["type"] == "http.response.start":
                status = message["status"]
                status_sent = True
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        except Exception as error:
            logger.error("%s %s raised %s", scope["method"], scope["path"], type(error).__name__,
                         exc_info=error, extra={"action": "request.crash"})
            if status_sent:
                raise
            status = 500
            await internal_error_response()(scope, receive, send)
        finally:
            duration_ms = (time.perf_counter() - started) * 1000
            logger.info("%s %s %d %.1fms", scope["method"], scope["path"], status, duration_ms,
                        extra={"action": "request"})
