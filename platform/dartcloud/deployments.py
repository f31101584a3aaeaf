"""Deploying and deleting functions: validate, store, build in the background, clean up."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

from . import archive
from .builder import Builder, BuildRequest
from .config import Settings
from .db import Database
from .db import functions as functions_db
from .db import logs as logs_db
from .engine import LABEL_DEPLOYMENT, LABEL_FUNCTION, Engine
from .errors import EngineError, InvalidInput
from .tasks import TaskSet

logger = logging.getLogger(__name__)

FUNCTION_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")
STAGING = ".staging"
# Ready versions whose images are kept: the active one, and the one before it
# for calls that looked it up just before the switch.
RETAINED_IMAGES = 2


def check_function_name(name: str | None) -> str:
    if name is None or name == "":
        raise InvalidInput("the form field `name` is missing; give the function a name "
                           "such as `hello`", code="missing_field")
    if not FUNCTION_NAME.fullmatch(name):
        raise InvalidInput(f"invalid function name {name!r}: use 1 to 63 characters, a lower-case "
                           "letter first, then lower-case letters, digits, '_' or '-'",
                           code="invalid_name")
    return name


class Deployer:
    """Owns the life of deployments: accept, build, activate, and delete with cleanup."""

    def __init__(self, db: Database, engine: Engine, settings: Settings, tasks: TaskSet) -> None:
        self._db = db
        self._engine = engine
        self._settings = settings
        self._tasks = tasks
        self._root = settings.functions_root
        self._limits = archive.ArchiveLimits(max_files=settings.max_archive_files,
                                             max_unpacked_bytes=settings.max_unpacked_bytes)
        self._build_slots = asyncio.Semaphore(settings.max_concurrent_builds)
        self._builds: dict[uuid.UUID, set[asyncio.Task]] = {}
        self._builder = Builder(engine, dart_image=settings.dart_image,
                                instance_id=settings.instance_id,
                                timeout=settings.build_timeout, write_lines=self._write_build_lines)

    @property
    def staging_root(self) -> Path:
        return self._root / STAGING

    async def deploy(self, user_id: uuid.UUID, name: str, archive_path: Path) -> dict:
        """Validate the archive, store the source and rows, and start the build.

        Nothing is written to the database or outside the staging folder until
        the archive has passed every check.
        """
        staging = self.staging_root / uuid.uuid4().hex
        await asyncio.to_thread(archive.extract_archive, archive_path, staging, self._limits)
        try:
            project = await asyncio.to_thread(archive.find_project, staging)
            record = await self._store(user_id, name, project)
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)

        logger.info("deployment accepted", extra={
            "action": "deploy.accepted", "function_id": str(record["function_id"]),
            "deployment_id": str(record["deployment_id"]), "version": record["version"]})
        request = BuildRequest(function_id=record["function_id"],
                               deployment_id=record["deployment_id"], version=record["version"],
                               source=record["source"], entry_point=project.entry_point)
        task = self._tasks.spawn(self._build(request), name=f"build-{request.deployment_id}")
        self._builds.setdefault(request.function_id, set()).add(task)
        task.add_done_callback(lambda done: self._builds.get(request.function_id, set()).discard(done))
        return {"id": str(record["function_id"]), "name": name, "version": record["version"],
                "deployment_id": str(record["deployment_id"]), "status": "building"}

    async def _store(self, user_id: uuid.UUID, name: str, project: archive.Project) -> dict:
        """Insert the rows and move the source into place, in one transaction."""
        target: Path | None = None
        try:
            async with self._db.transaction() as connection:
                record = await functions_db.insert_deployment(
                    connection, user_id, name, project.entry_point, self._settings.instance_id)
                target = self._root / str(record["function_id"]) / str(record["version"])
                await asyncio.to_thread(_move_into_place, project.root, target)
                await logs_db.insert_logs(connection, record["function_id"], "info", [
                    f"deployment of version {record['version']} accepted "
                    f"(entry point {project.entry_point})"])
        except BaseException:
            # The transaction rolled back, so the folder must go too.
            if target is not None:
                await asyncio.to_thread(shutil.rmtree, target, True)
            raise
        return {**record, "source": target}

    async def _build(self, request: BuildRequest) -> None:
        async with self._build_slots:
            await self._write_build_lines(request.function_id, [
                f"build of version {request.version} started from {self._settings.dart_image}"])
            try:
                outcome = await self._builder.build(request)
            except Exception as error:
                logger.exception("build crashed", extra={
                    "action": "build.crashed", "deployment_id": str(request.deployment_id)})
                outcome = None
                message = f"the build failed because of a platform error: {error}"

        if outcome is not None and outcome.image is not None:
            await functions_db.mark_deployment_ready(self._db, request.deployment_id, outcome.image)
            await self._write_log(request.function_id, "info",
                                  f"version {request.version} is ready as {outcome.image}")
            logger.info("deployment ready", extra={
                "action": "deploy.ready", "deployment_id": str(request.deployment_id)})
            await self._remove_old_images(request.function_id)
            return

        message = outcome.error if outcome is not None else message
        await functions_db.mark_deployment_failed(self._db, request.deployment_id, message)
        await self._write_log(request.function_id, "error",
                              f"version {request.version} failed: {message}")
        logger.warning("deployment failed: %s", message, extra={
            "action": "deploy.failed", "deployment_id": str(request.deployment_id)})

    async def _remove_old_images(self, function_id: uuid.UUID) -> None:
        """Remove the images of ready versions older than the retained ones."""
        # NOTE: the engine keeps an image that a running container uses, and
        # nothing retries it later; it goes when the function is deleted.
        deployments = await functions_db.fetch_deployments(self._db, function_id)
        ready = [row for row in deployments if row["status"] == "ready"]
        for row in ready[RETAINED_IMAGES:]:
            if row["image"] is None:
                continue
            try:
                await self._engine.remove_images({LABEL_FUNCTION: str(function_id),
                                                  LABEL_DEPLOYMENT: str(row["id"])})
                await functions_db.clear_deployment_image(self._db, row["id"])
                await self._write_log(function_id, "info",
                                      f"removed the image of version {row['version']}, which "
                                      f"is older than the {RETAINED_IMAGES} newest ready versions")
            except EngineError as error:
                logger.warning("could not remove the image of version %d: %s", row["version"],
                               error.message, extra={"action": "deploy.cleanup_failed",
                                                     "deployment_id": str(row["id"])})

    async def _write_build_lines(self, function_id: uuid.UUID, lines: list[str]) -> None:
        await self._write_logs(function_id, "build", lines)

    async def _write_log(self, function_id: uuid.UUID, level: str, message: str) -> None:
        await self._write_logs(function_id, level, [message])

    async def _write_logs(self, function_id: uuid.UUID, level: str, lines: list[str]) -> None:
        try:
            await logs_db.insert_logs(self._db, function_id, level, lines)
        except asyncpg.ForeignKeyViolationError:
            # The function was deleted while it was building; its logs went with it.
            pass

    async def delete(self, user_id: uuid.UUID, function_id: uuid.UUID,
                     stop_invocations: Callable[[uuid.UUID], Awaitable[int]]) -> bool:
        """Delete the function's rows, builds, images and source folders; False if not found.

        `stop_invocations` must stop the function's running containers before
        it returns, because the engine refuses to remove an image that a
        running container uses.
        """
        if not await functions_db.delete_function(self._db, function_id, user_id):
            return False

        builds = list(self._builds.pop(function_id, ()))
        for task in builds:
            task.cancel()
        # A build that finishes while it is being stopped may still tag an
        # image, so images are removed only once every build has ended.
        await asyncio.gather(*builds, return_exceptions=True)
        await stop_invocations(function_id)
        removed = await self._engine.remove_images({LABEL_FUNCTION: str(function_id)})
        await asyncio.to_thread(shutil.rmtree, self._root / str(function_id), True)
        logger.info("function deleted", extra={
            "action": "function.deleted", "function_id": str(function_id), "images": removed})
        return True

    async def remove_staging(self) -> None:
        """Remove staging folders left by a deploy that was interrupted."""
        await asyncio.to_thread(shutil.rmtree, self.staging_root, True)


def _move_into_place(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # Both folders live under FUNCTIONS_DIR, so this is a rename, not a copy.
    source.rename(target)
