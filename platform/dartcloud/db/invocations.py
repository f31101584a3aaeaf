"""SQL for the `function_invocations` table."""

from __future__ import annotations

import uuid

import asyncpg

from .database import Database

INSERT_INVOCATION = """
INSERT INTO function_invocations (id, function_id, deployment_id, instance_id)
VALUES ($1, $2, $3, $4)
"""
FINISH_INVOCATION = """
UPDATE function_invocations
SET status = $2, exit_code = $3, duration_ms = $4, error = $5, output = $6,
    stdout_bytes = $7, stderr_bytes = $8, finished_at = now()
WHERE id = $1
"""
FAIL_RUNNING_INVOCATIONS = """
UPDATE function_invocations
SET status = 'error', error = $1, finished_at = now()
WHERE status = 'running' AND instance_id = $2
RETURNING id, function_id
"""
FETCH_STATISTICS = """
SELECT count(*) AS invocations,
       count(*) FILTER (WHERE status = 'success') AS successes,
       count(*) FILTER (WHERE status = 'error') AS errors,
       count(*) FILTER (WHERE status = 'timeout') AS timeouts,
       count(*) FILTER (WHERE status = 'running') AS running,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) AS p50_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) AS p95_ms,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms) AS p99_ms,
       max(timestamp) AS last_invocation_at
FROM function_invocations
WHERE function_id = $1
"""


async def insert_invocation(db: Database, invocation_id: uuid.UUID, function_id: uuid.UUID,
                            deployment_id: uuid.UUID, instance_id: str) -> None:
    await db.execute(INSERT_INVOCATION, invocation_id, function_id, deployment_id, instance_id)


async def finish_invocation(db: Database, invocation_id: uuid.UUID, *, status: str,
                            exit_code: int | None, duration_ms: int, error: str | None,
                            output: str | None, stdout_bytes: int, stderr_bytes: int) -> None:
    await db.execute(FINISH_INVOCATION, invocation_id, status, exit_code, duration_ms, error,
                     output, stdout_bytes, stderr_bytes)


async def fail_running_invocations(db: Database, error: str,
                                   instance_id: str) -> list[asyncpg.Record]:
    """Mark the instance's running invocations failed; return (id, function_id) rows."""
    return await db.fetch(FAIL_RUNNING_INVOCATIONS, error, instance_id)


async def fetch_statistics(db: Database | asyncpg.Connection,
                           function_id: uuid.UUID) -> asyncpg.Record:
    """Return counts, duration percentiles in ms and the last invocation time."""
    return await db.fetchrow(FETCH_STATISTICS, function_id)
