"""GET /health: whether the database and the Docker engine respond."""

from __future__ import annotations

import asyncio
import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .responses import json_response

logger = logging.getLogger(__name__)

CHECK_TIMEOUT = 3.0


async def _check(name: str, probe) -> str:
    try:
        await asyncio.wait_for(probe(), timeout=CHECK_TIMEOUT)
    except Exception as error:  # any failure means the dependency is unavailable
        logger.warning("health check of %s failed: %s", name, error or type(error).__name__,
                       extra={"action": "health"})
        return "unavailable"
    return "ok"


async def health(request: Request) -> Response:
    state = request.app.state
    database, docker = await asyncio.gather(_check("database", state.db.ping),
                                            _check("docker", state.engine.ping))
    healthy = database == "ok" and docker == "ok"
    return json_response({"status": "ok" if healthy else "unavailable",
                          "database": database, "docker": docker},
                         status_code=200 if healthy else 503)


routes = [Route("/health", health, methods=["GET"])]
