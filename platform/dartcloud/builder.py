"""Turn a deployment's source folder into a Docker image.

The image comes from the template in `images/function/Dockerfile`: a first
stage `FROM ${DART_IMAGE}` runs `dart pub get` and `dart compile exe`, and a
`FROM scratch` stage keeps only the SDK's `/runtime/` and the executable.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import re
import tarfile
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from .engine import LABEL_DEPLOYMENT, LABEL_FUNCTION, LABEL_INSTANCE, Engine
from .errors import EngineError

logger = logging.getLogger(__name__)

TEMPLATE = Path(__file__).resolve().parents[2] / "images" / "function" / "Dockerfile"
# Build output is written to the logs table in batches of at most this many lines.
_LOG_BATCH = 200
# Output lines quoted in a failed deployment's error, so the cause shows without the logs.
_ERROR_CONTEXT_LINES = 5
# Colour and cursor escapes, which the classic builder wraps around a step's stderr.
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclasses.dataclass(frozen=True)
class BuildRequest:
    function_id: uuid.UUID
    deployment_id: uuid.UUID
    version: int
    source: Path
    entry_point: str


@dataclasses.dataclass(frozen=True)
class BuildOutcome:
    image: str | None
    error: str | None


def image_tag(function_id: uuid.UUID, version: int) -> str:
    return f"dartcloud-fn-{function_id}:{version}"


class Builder:
    """Run image builds with a time limit, sending every output line to `write_lines`."""

    def __init__(self, engine: Engine, *, dart_image: str, instance_id: str, timeout: float,
                 write_lines: Callable[[uuid.UUID, list[str]], Awaitable[None]]) -> None:
        self._engine = engine
        self._dart_image = dart_image
        self._instance_id = instance_id
        self._timeout = timeout
        self._write_lines = write_lines

    async def build(self, request: BuildRequest) -> BuildOutcome:
        if not await self._engine.image_exists(self._dart_image):
            return BuildOutcome(image=None, error=(
                f"the Dart base image {self._dart_image!r} is not present on the Docker host; "
                f"run `docker pull {self._dart_image}` there, or set DART_IMAGE to a local image"))

        context = await asyncio.to_thread(self._make_context, request)
        try:
            return await self._run_build(request, context)
        finally:
            context.close()
            await self._remove_build_images(request)

    async def _remove_build_images(self, request: BuildRequest) -> None:
        try:
            await self._engine.remove_build_images(str(request.deployment_id))
        except EngineError as error:
            logger.warning("could not remove the intermediate images of build %s: %s",
                           request.deployment_id, error.message,
                           extra={"action": "build.cleanup_failed"})

    def _make_context(self, request: BuildRequest) -> tempfile.SpooledTemporaryFile:
        """Pack the template and the source (as `source/`) into an uncompressed tar."""
        context = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)
        with tarfile.open(fileobj=context, mode="w") as tar:
            tar.add(TEMPLATE, arcname="Dockerfile")
            tar.add(request.source, arcname="source")
        context.seek(0)
        return context

    async def _run_build(self, request: BuildRequest, context) -> BuildOutcome:
        loop = asyncio.get_running_loop()
        lines: asyncio.Queue[str | None] = asyncio.Queue()
        writer = asyncio.create_task(self._drain(request.function_id, lines))
        recent: collections.deque[str] = collections.deque(maxlen=_ERROR_CONTEXT_LINES)

        def on_line(line: str) -> None:
            line = _ANSI_ESCAPE.sub("", line)
            if line.strip():
                recent.append(line.strip())
            loop.call_soon_threadsafe(lines.put_nowait, line)

        tag = image_tag(request.function_id, request.version)
        build = asyncio.ensure_future(self._engine.build(
            context,
            tag=tag,
            buildargs={"DART_IMAGE": self._dart_image, "ENTRY_POINT": request.entry_point,
                       "DEPLOYMENT_ID": str(request.deployment_id),
                       "INSTANCE_ID": self._instance_id},
            labels={LABEL_FUNCTION: str(request.function_id),
                    LABEL_DEPLOYMENT: str(request.deployment_id),
                    LABEL_INSTANCE: self._instance_id},
            on_line=on_line,
            # The builder stops the build itself at its time limit; this only
            # keeps a silent step from tripping the HTTP read timeout first.
            timeout=self._timeout + 60,
        ))
        started = time.monotonic()
        try:
            done, _ = await asyncio.wait({build}, timeout=self._timeout)
            if not done:
                await self._stop(request, build)
                error = (f"the build ran past its time limit of {self._timeout:g} s (BUILD_TIMEOUT) "
                         "and was stopped")
                return BuildOutcome(image=None, error=error)

            try:
                result = build.result()
            except EngineError as failure:
                return BuildOutcome(image=None, error=f"the build failed: {failure.message}")
            if result.error is not None:
                context = "\n".join(line for line in recent if line != result.error.strip())
                error = f"the build failed: {_ANSI_ESCAPE.sub('', result.error)}"
                if context:
                    error += f"\nlast build output:\n{context}"
                return BuildOutcome(image=None, error=error + "\nthe build logs (level=build) "
                                    "have the whole output")
            logger.info("image built", extra={"action": "build.finished", "image": tag,
                                              "seconds": round(time.monotonic() - started, 2)})
            return BuildOutcome(image=tag, error=None)
        finally:
            if not build.done():
                await self._stop(request, build)
            loop.call_soon_threadsafe(lines.put_nowait, None)
            await writer

    async def _stop(self, request: BuildRequest, build: asyncio.Future) -> None:
        """Kill the build's step containers until the engine gives the build up."""
        deployment_id = str(request.deployment_id)
        while not build.done():
            await self._engine.kill_build(deployment_id)
            await asyncio.wait({build}, timeout=0.5)
        try:
            build.result()
        except EngineError:
            pass

    async def _drain(self, function_id: uuid.UUID, lines: asyncio.Queue[str | None]) -> None:
        finished = False
        while not finished:
            batch = [await lines.get()]
            while len(batch) < _LOG_BATCH and not lines.empty():
                batch.append(lines.get_nowait())
            if None in batch:
                finished = True
                batch = batch[:batch.index(None)]
            if batch:
                await self._write_lines(function_id, batch)
