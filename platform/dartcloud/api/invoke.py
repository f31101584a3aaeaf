"""POST /api/functions/{id}/invoke: run the active deployment with the JSON body."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..config import MAX_INPUT_BYTES
from ..errors import Conflict, UnsupportedMediaType
from ..invocations import Target
from .functions import fetch_owned_function
from .responses import is_json_content_type, json_response, parse_json, read_body

INPUT_LIMIT_MESSAGE = (
    f"the request body is larger than {MAX_INPUT_BYTES} bytes, the most that fits in the "
    "FUNCTION_INPUT environment variable (Linux caps one environment string at 131072 bytes)")


async def invoke(request: Request) -> Response:
    _, row = await fetch_owned_function(request)
    if row["active_deployment_id"] is None:
        advice = ("wait for its build to finish" if row["status"] == "building" else
                  "its build failed: read the build logs, fix the function and deploy it again")
        raise Conflict(f"function {row['name']!r} has no ready deployment (status: "
                       f"{row['status']}); {advice}", code="function_not_ready")

    body = await read_body(request, MAX_INPUT_BYTES, limit_message=INPUT_LIMIT_MESSAGE)
    text = _input_text(request, body)

    target = Target(function_id=row["id"], deployment_id=row["active_deployment_id"],
                    image=row["active_image"])
    result = await request.app.state.invoker.invoke(target, text)
    return json_response(result)


def _input_text(request: Request, body: bytes) -> str:
    """Validate the body as JSON and return it unchanged as text; an empty body is `{}`."""
    if not body.strip():
        return "{}"
    if not is_json_content_type(request):
        raise UnsupportedMediaType("send the input as JSON with the header "
                                   "`Content-Type: application/json`")
    text, _ = parse_json(body)
    return text


routes = [Route("/api/functions/{function_id}/invoke", invoke, methods=["POST"])]
