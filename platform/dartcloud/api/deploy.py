"""POST /api/functions/deploy: accept an archive and start its build."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..deployments import check_function_name
from ..errors import InvalidInput
from .auth import authenticate
from .responses import json_response
from .upload import receive_upload


async def deploy(request: Request) -> Response:
    user_id = await authenticate(request)
    state = request.app.state

    upload = await receive_upload(request, file_field="archive",
                                  spool_dir=state.deployer.staging_root,
                                  max_file_bytes=state.settings.max_archive_bytes)
    try:
        name = check_function_name(upload.fields.get("name"))
        if upload.file_path is None:
            raise InvalidInput("the form field `archive` is missing; attach the tar.gz file, "
                               "as `curl -F archive=@hello.tar.gz` does", code="missing_field")
        document = await state.deployer.deploy(user_id, name, upload.file_path)
    finally:
        upload.discard()
    return json_response(document, status_code=202)


routes = [Route("/api/functions/deploy", deploy, methods=["POST"])]
