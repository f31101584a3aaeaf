"""Reading and deleting functions: list, details with statistics, logs, delete."""

from __future__ import annotations

import uuid
from datetime import datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..db import functions as functions_db
from ..db import invocations as invocations_db
from ..db import logs as logs_db
from ..errors import InvalidInput, NotFound
from .auth import authenticate
from .responses import json_response

LOG_LEVELS = ("build", "stderr", "info", "warning", "error")
DEFAULT_LOG_LIMIT = 100
MAX_LOG_LIMIT = 1000


def parse_function_id(request: Request) -> uuid.UUID:
    """Read the id path parameter; a malformed id is simply a function that does not exist."""
    try:
        return uuid.UUID(request.path_params["function_id"])
    except ValueError:
        raise _not_found(request) from None


def _not_found(request: Request) -> NotFound:
    requested_id = request.path_params["function_id"][:80]
    return NotFound(f"function {requested_id!r} not found; routes take the function's id, not its "
                    "name, and GET /api/functions lists yours", code="function_not_found")


async def fetch_owned_function(request: Request):
    """Authenticate, then return the caller's function row or raise 404."""
    user_id = await authenticate(request)
    function_id = parse_function_id(request)
    row = await functions_db.fetch_function(request.app.state.db, function_id, user_id)
    if row is None:
        raise _not_found(request)
    return user_id, row


def _timestamp(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def function_json(row) -> dict:
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "status": row["status"],
        "active_version": row["active_version"],
        "created_at": _timestamp(row["created_at"]),
        "updated_at": _timestamp(row["updated_at"]),
    }


async def list_functions(request: Request) -> Response:
    user_id = await authenticate(request)
    rows = await functions_db.list_functions(request.app.state.db, user_id)
    return json_response({"functions": [function_json(row) for row in rows]})


async def get_function(request: Request) -> Response:
    user_id = await authenticate(request)
    function_id = parse_function_id(request)
    # One snapshot, so a build that ends between the queries cannot show a
    # failed deployment under a function that is still building.
    async with request.app.state.db.snapshot() as connection:
        row = await functions_db.fetch_function(connection, function_id, user_id)
        if row is None:
            raise _not_found(request)
        deployments = await functions_db.fetch_deployments(connection, row["id"])
        statistics = await invocations_db.fetch_statistics(connection, row["id"])

    document = function_json(row)
    document["deployments"] = [{
        "id": str(deployment["id"]),
        "version": deployment["version"],
        "status": deployment["status"],
        "error": deployment["error"],
        "entry_point": deployment["entry_point"],
        "image": deployment["image"],
        "created_at": _timestamp(deployment["created_at"]),
        "finished_at": _timestamp(deployment["finished_at"]),
    } for deployment in deployments]
    document["statistics"] = _statistics_json(statistics)
    return json_response(document)


def _statistics_json(row) -> dict:
    def milliseconds(value: float | None) -> float | None:
        return round(value, 1) if value is not None else None

    return {
        "invocations": row["invocations"],
        "successes": row["successes"],
        "errors": row["errors"],
        "timeouts": row["timeouts"],
        "running": row["running"],
        "duration_ms": {"p50": milliseconds(row["p50_ms"]), "p95": milliseconds(row["p95_ms"]),
                        "p99": milliseconds(row["p99_ms"])},
        "last_invocation_at": _timestamp(row["last_invocation_at"]),
    }


async def delete_function(request: Request) -> Response:
    user_id = await authenticate(request)
    function_id = parse_function_id(request)
    state = request.app.state
    if not await state.deployer.delete(user_id, function_id,
                                       stop_invocations=state.invoker.stop_function):
        raise _not_found(request)
    return Response(status_code=204)


async def function_logs(request: Request) -> Response:
    _, row = await fetch_owned_function(request)
    limit, before, level = _log_query(request)
    # Fetching one row more than the page shows whether another page follows.
    rows = await logs_db.fetch_logs(request.app.state.db, row["id"], before=before, level=level,
                                    limit=limit + 1)
    logs = [{"id": log["id"], "level": log["level"], "message": log["message"],
             "invocation_id": str(log["invocation_id"]) if log["invocation_id"] else None,
             "timestamp": _timestamp(log["timestamp"])} for log in rows[:limit]]
    next_before = logs[-1]["id"] if len(rows) > limit else None
    return json_response({"logs": logs, "next_before": next_before})


def _log_query(request: Request) -> tuple[int, int | None, str | None]:
    query = request.query_params
    unknown = set(query) - {"limit", "before", "level"}
    if unknown:
        raise InvalidInput(f"unknown query parameter {sorted(unknown)[0]!r}; "
                           "use limit, before and level", code="invalid_query")

    limit = _integer_parameter(query.get("limit"), "limit", DEFAULT_LOG_LIMIT, 1, MAX_LOG_LIMIT)
    before = _integer_parameter(query.get("before"), "before", None, 1, 2**63 - 1)
    level = query.get("level")
    if level is not None and level not in LOG_LEVELS:
        raise InvalidInput(f"invalid level {level!r}; use one of {', '.join(LOG_LEVELS)}",
                           code="invalid_query")
    return limit, before, level


def _integer_parameter(text: str | None, name: str, default: int | None, minimum: int,
                       maximum: int) -> int | None:
    if text is None:
        return default
    if not text.isdigit() or not minimum <= int(text) <= maximum:
        raise InvalidInput(f"invalid {name} {text!r}; use an integer from {minimum} to {maximum}",
                           code="invalid_query")
    return int(text)


routes = [
    Route("/api/functions", list_functions, methods=["GET"]),
    Route("/api/functions/{function_id}", get_function, methods=["GET"]),
    Route("/api/functions/{function_id}", delete_function, methods=["DELETE"]),
    Route("/api/functions/{function_id}/logs", function_logs, methods=["GET"]),
]
