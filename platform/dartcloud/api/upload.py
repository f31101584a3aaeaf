"""Streaming `multipart/form-data` parsing that writes the file part straight to disk."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import tempfile
from pathlib import Path

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from ..errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

MAX_FIELD_BYTES = 4096
# Room for part headers, boundaries and the small fields around the file.
_ENVELOPE_BYTES = 64 * 1024


@dataclasses.dataclass
class Upload:
    fields: dict[str, str]
    file_path: Path | None

    def discard(self) -> None:
        if self.file_path is not None:
            self.file_path.unlink(missing_ok=True)


class _PartState:
    def __init__(self) -> None:
        self.headers: dict[bytes, bytes] = {}
        self.header_field = b""
        self.header_value = b""
        self.name: str | None = None
        self.is_file = False
        self.value = bytearray()


async def receive_upload(request: Request, *, file_field: str, spool_dir: Path,
                         max_file_bytes: int) -> Upload:
    """Read the request body, storing the part named `file_field` in a file under `spool_dir`.

    Raises 415 for another content type, 413 when the file passes
    `max_file_bytes` or a text field passes `MAX_FIELD_BYTES`, and 400 for a
    malformed or incomplete body. The caller owns the returned file.
    """
    content_type, options = parse_options_header(request.headers.get("content-type"))
    if content_type != b"multipart/form-data" or b"boundary" not in options:
        raise UnsupportedMediaType(
            "send the deployment as multipart/form-data with the fields `name` and `archive`, "
            "as `curl -F name=hello -F archive=@hello.tar.gz` does")

    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_file_bytes + _ENVELOPE_BYTES:
        raise _too_large(max_file_bytes)

    spool_dir.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(prefix="upload-", suffix=".tar.gz", dir=spool_dir)
    file = os.fdopen(descriptor, "wb")
    upload = Upload(fields={}, file_path=Path(name))
    try:
        await _parse(request, options[b"boundary"], file_field, file, upload, max_file_bytes)
    except BaseException:
        file.close()
        upload.discard()
        raise
    file.close()
    return upload


async def _parse(request: Request, boundary: bytes, file_field: str, file, upload: Upload,
                 max_file_bytes: int) -> None:
    state = {"part": _PartState(), "file_bytes": 0, "ended": False, "file_seen": False}
    pending: list[bytes] = []

    def on_part_begin() -> None:
        state["part"] = _PartState()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["part"].header_field += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["part"].header_value += data[start:end]

    def on_header_end() -> None:
        part = state["part"]
        part.headers[part.header_field.strip().lower()] = part.header_value.strip()
        part.header_field = b""
        part.header_value = b""

    def on_headers_finished() -> None:
        part = state["part"]
        _, disposition = parse_options_header(part.headers.get(b"content-disposition", b""))
        part.name = disposition.get(b"name", b"").decode("utf-8", "replace")
        part.is_file = part.name == file_field
        if part.is_file:
            if state["file_seen"]:
                raise BadRequest(f"the field `{file_field}` appears more than once; send one archive")
            state["file_seen"] = True

    def on_part_data(data: bytes, start: int, end: int) -> None:
        part = state["part"]
        chunk = data[start:end]
        if part.is_file:
            state["file_bytes"] += len(chunk)
            if state["file_bytes"] > max_file_bytes:
                raise _too_large(max_file_bytes)
            pending.append(chunk)
            return
        part.value += chunk
        if len(part.value) > MAX_FIELD_BYTES:
            raise PayloadTooLarge(f"the form field `{part.name}` is longer than "
                                  f"{MAX_FIELD_BYTES} bytes", code="field_too_large")

    def on_part_end() -> None:
        part = state["part"]
        if part.name and not part.is_file:
            upload.fields[part.name] = part.value.decode("utf-8", "replace")

    def on_end() -> None:
        state["ended"] = True

    parser = MultipartParser(boundary, callbacks={
        "on_part_begin": on_part_begin, "on_header_field": on_header_field,
        "on_header_value": on_header_value, "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
        "on_part_end": on_part_end, "on_end": on_end,
    })

    try:
        async for chunk in request.stream():
            try:
                parser.write(chunk)
            except (PayloadTooLarge, BadRequest):
                raise
            except Exception as error:  # python-multipart raises several error types
                raise BadRequest(f"the multipart body is malformed: {error}",
                                 code="malformed_multipart") from None
            if pending:
                data = b"".join(pending)
                pending.clear()
                # Disk writes go to a thread so a slow disk never stalls the event loop.
                await asyncio.to_thread(file.write, data)
    except ClientDisconnect:
        raise BadRequest("the upload was cut short by the client", code="upload_incomplete") from None

    if not state["ended"]:
        raise BadRequest("the multipart body ended before its closing boundary; send it again",
                         code="upload_incomplete")
    if not state["file_seen"]:
        upload.discard()
        upload.file_path = None


def _too_large(max_file_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the archive is larger than the limit of {max_file_bytes} bytes (MAX_ARCHIVE_BYTES); "
        "remove files the function does not need", code="archive_too_large")
