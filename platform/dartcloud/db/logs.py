"""SQL for the `function_logs` table."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import asyncpg

from .database import Database

INSERT_LOGS = """
INSERT INTO function_logs (function_id, invocation_id, level, message) VALUES ($1, $2, $3, $4)
"""

FETCH_LOGS = """
SELECT id, invocation_id, level, message, timestamp
FROM function_logs
WHERE function_id = $1
  AND ($2::bigint IS NULL OR id < $2)
  AND ($3::text IS NULL OR level = $3)
ORDER BY id DESC
LIMIT $4
"""


async def insert_logs(db: Database | asyncpg.Connection, function_id: uuid.UUID, level: str,
                      messages: Iterable[str], invocation_id: uuid.UUID | None = None) -> None:
    await insert_log_rows(db, function_id, invocation_id,
                          [(level, message) for message in messages])


async def insert_log_rows(db: Database | asyncpg.Connection, function_id: uuid.UUID,
                          invocation_id: uuid.UUID | None, rows: list[tuple[str, str]]) -> None:
    """Insert (level, message) rows in order, so that their ids follow that order."""
    # PostgreSQL text cannot contain NUL, and a function may print one.
    values = [(function_id, invocation_id, level, message.replace("\x00", "\ufffd"))
              for level, message in rows]
    if values:
        await db.executemany(INSERT_LOGS, values)


async def fetch_logs(db: Database, function_id: uuid.UUID, *, before: int | None,
                     level: str | None, limit: int) -> list[asyncpg.Record]:
    """Return up to `limit` log rows, newest first, older than the `before` id."""
    return await db.fetch(FETCH_LOGS, function_id, before, level, limit)
