"""Command line: `python -m dartcloud [serve|migrate]`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from .config import ConfigError, load_settings
from .logsetup import configure_logging

logger = logging.getLogger("dartcloud")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dartcloud", description=__doc__)
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate"],
                        help="serve: run the HTTP service (default); migrate: apply migrations")
    arguments = parser.parse_args(argv)

    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"dartcloud: configuration error: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)

    if arguments.command == "migrate":
        return asyncio.run(_migrate(settings))
    return _serve(settings)


async def _migrate(settings) -> int:
    from .app import database_url
    from .db.migrations import apply_migrations

    async with database_url(settings) as url:
        applied = await apply_migrations(url)
    logger.info("migrations applied: %s", ", ".join(applied) or "none, the schema is current")
    return 0


def _serve(settings) -> int:
    import uvicorn

    from .app import create_app, preflight
    from .errors import EngineError

    # Checked before uvicorn starts, so the operator gets one line instead of
    # a startup traceback.
    try:
        asyncio.run(preflight(settings))
    except EngineError as error:
        print(f"dartcloud: {error.message}", file=sys.stderr)
        return 1
    except ConfigError as error:
        print(f"dartcloud: configuration error: {error}", file=sys.stderr)
        return 2

    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_config=None, access_log=False, lifespan="on")
    return 0


if __name__ == "__main__":
    sys.exit(main())
