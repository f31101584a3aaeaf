"""The Starlette application and the lifespan that starts and stops its parts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware

from . import passwords, tokens
from .api import auth, deploy, functions, health, invoke
from .api.middleware import RequestLogMiddleware
from .api.responses import EXCEPTION_HANDLERS
from .config import ConfigError, Settings
from .db import Database
from .db.embedded import EmbeddedPostgres
from .db.migrations import apply_migrations
from .deployments import Deployer
from .engine import Engine
from .invocations import Invoker
from .recovery import recover
from .tasks import TaskSet

logger = logging.getLogger(__name__)

# Seconds that shutdown waits for container removals before it gives up on them.
CLEANUP_GRACE = 15.0


@contextlib.asynccontextmanager
async def database_url(settings: Settings) -> AsyncIterator[str]:
    """Yield DATABASE_URL, or the URL of an embedded server that runs until the block ends."""
    if settings.database_url:
        yield settings.database_url
        return

    embedded = EmbeddedPostgres(settings.data_dir)
    url = await asyncio.to_thread(embedded.start)
    try:
        yield url
    finally:
        await asyncio.to_thread(embedded.stop)


async def check_engine(settings: Settings, engine: Engine) -> None:
    """Raise `ConfigError` when a setting names something the Docker engine does not have."""
    if settings.function_network != "none" and \
            not await engine.network_exists(settings.function_network):
        raise ConfigError(f"invalid FUNCTION_NETWORK={settings.function_network!r}: the Docker "
                          "engine has no such network; use none, or create the network first "
                          "(docker network create NAME)")


async def preflight(settings: Settings) -> None:
    """Check that the Docker engine responds and fits the settings, before the service starts."""
    engine = await asyncio.to_thread(Engine, 1)
    try:
        await check_engine(settings, engine)
    finally:
        engine.close()


@contextlib.asynccontextmanager
async def _services(app: Starlette, settings: Settings, applied: list[str]) -> AsyncIterator[None]:
    """Start the engine, the domain services and recovery, and stop them at the end."""
    state = app.state
    state.settings = settings
    state.jwt_secret = settings.jwt_secret or await asyncio.to_thread(
        tokens.load_or_create_secret, settings.data_dir)
    state.dummy_hash = await asyncio.to_thread(
        passwords.hash_password, "timing-equaliser", settings.bcrypt_rounds)

    threads = 3 * settings.max_concurrent_invocations + 4 * settings.max_concurrent_builds + 8
    # Making the client asks the engine for its API version, a blocking call.
    state.engine = await asyncio.to_thread(Engine, threads)
    await check_engine(settings, state.engine)
    builds, cleanup = TaskSet(), TaskSet()
    state.deployer = Deployer(state.db, state.engine, settings, builds)
    state.invoker = Invoker(state.db, state.engine, settings, cleanup)

    await recover(state.db, state.engine, settings.instance_id)
    await state.deployer.remove_staging()
    if not await state.engine.image_exists(settings.dart_image):
        logger.warning("the Dart base image %s is not present on the Docker host, so every build "
                       "will fail; run `docker pull %s` there, or set DART_IMAGE to a local image",
                       settings.dart_image, settings.dart_image, extra={"action": "service.start"})
    logger.info("service started on %s:%d", settings.host, settings.port, extra={
        "action": "service.start", "migrations_applied": len(applied),
        "dart_image": settings.dart_image, "instance": settings.instance_id,
        "function_timeout": settings.function_timeout,
        "function_memory_mb": settings.function_memory_mb,
        "function_network": settings.function_network,
        "max_concurrent_invocations": settings.max_concurrent_invocations,
        "max_concurrent_per_function": settings.max_concurrent_per_function})
    try:
        yield
    finally:
        # A build can take minutes, so shutdown stops builds at once; the
        # next start marks them failed.
        await builds.drain(grace=0)
        await cleanup.drain(grace=CLEANUP_GRACE)
        state.engine.close()


def create_app(settings: Settings) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state = app.state
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        settings.functions_root.mkdir(parents=True, exist_ok=True)

        async with contextlib.AsyncExitStack() as stack:
            url = await stack.enter_async_context(database_url(settings))
            applied = await apply_migrations(url)
            state.db = Database(url)
            await state.db.connect()
            stack.push_async_callback(state.db.close)
            await stack.enter_async_context(_services(app, settings, applied))
            yield
        logger.info("service stopped", extra={"action": "service.stop"})

    routes = [
        *health.routes,
        *auth.routes,
        *deploy.routes,
        *functions.routes,
        *invoke.routes,
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(RequestLogMiddleware)],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
