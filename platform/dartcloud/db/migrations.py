"""Apply the numbered SQL files in `sql/`, each once and each in its own transaction."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import asyncpg

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[3] / "sql"

# Any fixed number works; it only has to be the same for every instance.
_ADVISORY_LOCK_KEY = 0x6461727463

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
_SELECT_APPLIED = "SELECT version FROM schema_migrations"
_INSERT_APPLIED = "INSERT INTO schema_migrations (version) VALUES ($1)"


def list_migrations(directory: Path = MIGRATIONS_DIR) -> list[tuple[str, Path]]:
    """Return (version, path) for every `NNNN_name.sql` file, in version order."""
    found = []
    for path in directory.glob("*.sql"):
        match = re.fullmatch(r"(\d+)_[\w-]+\.sql", path.name)
        if match is None:
            raise ValueError(f"migration file {path.name} does not match NNNN_name.sql")
        found.append((path.stem, path))
    return sorted(found, key=lambda item: int(item[0].split("_", 1)[0]))


async def apply_migrations(url: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply the migrations that the database has not recorded; return their versions.

    An advisory lock keeps two instances that start at once from applying the
    same file twice.
    """
    applied_now: list[str] = []
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("SELECT pg_advisory_lock($1)", _ADVISORY_LOCK_KEY)
        await connection.execute(_CREATE_TABLE)
        applied = {row["version"] for row in await connection.fetch(_SELECT_APPLIED)}

        for version, path in list_migrations(directory):
            if version in applied:
                continue
            async with connection.transaction():
                await connection.execute(path.read_text())
                await connection.execute(_INSERT_APPLIED, version)
            applied_now.append(version)
            logger.info("migration applied", extra={"action": "db.migrate", "version": version})
    finally:
        await connection.close()
    return applied_now
