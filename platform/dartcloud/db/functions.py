"""SQL for the `functions` and `deployments` tables."""

from __future__ import annotations

import uuid

import asyncpg

from .database import Database

UPSERT_FUNCTION = """
INSERT INTO functions (user_id, name) VALUES ($1, $2)
ON CONFLICT (user_id, name) DO UPDATE
SET updated_at = now(),
    status = CASE WHEN functions.active_deployment_id IS NULL THEN 'building'
                  ELSE functions.status END
RETURNING id
"""
NEXT_VERSION = "SELECT coalesce(max(version), 0) + 1 FROM deployments WHERE function_id = $1"
INSERT_DEPLOYMENT = """
INSERT INTO deployments (function_id, version, entry_point, instance_id) VALUES ($1, $2, $3, $4)
RETURNING id, version
"""
LOCK_FUNCTION = "SELECT id FROM functions WHERE id = $1 FOR UPDATE"
MARK_DEPLOYMENT_READY = """
UPDATE deployments SET status = 'ready', image = $2, finished_at = now()
WHERE id = $1 AND status = 'building'
RETURNING function_id, version
"""
MARK_DEPLOYMENT_FAILED = """
UPDATE deployments SET status = 'failed', error = $2, finished_at = now()
WHERE id = $1 AND status = 'building'
RETURNING function_id
"""
# A newer deployment that finished first stays active: only a higher version replaces it.
ACTIVATE_DEPLOYMENT = """
UPDATE functions f SET active_deployment_id = $2
WHERE f.id = $1
  AND (f.active_deployment_id IS NULL
       OR (SELECT version FROM deployments WHERE id = f.active_deployment_id) < $3)
"""
REFRESH_FUNCTION_STATUS = """
UPDATE functions f SET updated_at = now(), status = CASE
    WHEN f.active_deployment_id IS NOT NULL THEN 'ready'
    WHEN EXISTS (SELECT 1 FROM deployments d
                 WHERE d.function_id = f.id AND d.status = 'building') THEN 'building'
    ELSE 'failed' END
WHERE f.id = $1
"""
FAIL_BUILDING_DEPLOYMENTS = """
UPDATE deployments SET status = 'failed', error = $1, finished_at = now()
WHERE status = 'building' AND instance_id = $2
RETURNING id, function_id
"""

_FUNCTION_COLUMNS = """
f.id, f.name, f.status, f.created_at, f.updated_at,
d.version AS active_version, d.image AS active_image, d.id AS active_deployment_id
"""
LIST_FUNCTIONS = f"""
SELECT {_FUNCTION_COLUMNS}
FROM functions f LEFT JOIN deployments d ON d.id = f.active_deployment_id
WHERE f.user_id = $1
ORDER BY f.name
"""
FETCH_FUNCTION = f"""
SELECT {_FUNCTION_COLUMNS}
FROM functions f LEFT JOIN deployments d ON d.id = f.active_deployment_id
WHERE f.id = $1 AND f.user_id = $2
"""
FETCH_DEPLOYMENTS = """
SELECT id, version, status, error, image, entry_point, created_at, finished_at
FROM deployments WHERE function_id = $1
ORDER BY version DESC
"""
DELETE_FUNCTION = "DELETE FROM functions WHERE id = $1 AND user_id = $2 RETURNING id"
CLEAR_DEPLOYMENT_IMAGE = "UPDATE deployments SET image = NULL WHERE id = $1"


async def insert_deployment(connection: asyncpg.Connection, user_id: uuid.UUID, name: str,
                            entry_point: str, instance_id: str) -> dict:
    """Create the function if needed and add its next version; run inside a transaction.

    The upsert locks the function's row until the transaction ends, so two
    deploys of one name at once get distinct versions.
    """
    function_id = await connection.fetchval(UPSERT_FUNCTION, user_id, name)
    version = await connection.fetchval(NEXT_VERSION, function_id)
    deployment = await connection.fetchrow(INSERT_DEPLOYMENT, function_id, version, entry_point,
                                           instance_id)
    return {"function_id": function_id, "deployment_id": deployment["id"], "version": version}


async def mark_deployment_ready(db: Database, deployment_id: uuid.UUID, image: str) -> None:
    async with db.transaction() as connection:
        row = await connection.fetchrow(MARK_DEPLOYMENT_READY, deployment_id, image)
        if row is None:
            return
        await connection.execute(LOCK_FUNCTION, row["function_id"])
        await connection.execute(ACTIVATE_DEPLOYMENT, row["function_id"], deployment_id,
                                 row["version"])
        await connection.execute(REFRESH_FUNCTION_STATUS, row["function_id"])


async def mark_deployment_failed(db: Database, deployment_id: uuid.UUID, error: str) -> None:
    async with db.transaction() as connection:
        function_id = await connection.fetchval(MARK_DEPLOYMENT_FAILED, deployment_id, error)
        if function_id is None:
            return
        await connection.execute(LOCK_FUNCTION, function_id)
        await connection.execute(REFRESH_FUNCTION_STATUS, function_id)


async def fail_building_deployments(db: Database, error: str,
                                    instance_id: str) -> list[asyncpg.Record]:
    """Mark the instance's deployments still `building` as failed; return (id, function_id) rows."""
    async with db.transaction() as connection:
        rows = await connection.fetch(FAIL_BUILDING_DEPLOYMENTS, error, instance_id)
        for function_id in sorted({row["function_id"] for row in rows}):
            await connection.execute(REFRESH_FUNCTION_STATUS, function_id)
    return rows


async def list_functions(db: Database, user_id: uuid.UUID) -> list[asyncpg.Record]:
    return await db.fetch(LIST_FUNCTIONS, user_id)


async def fetch_function(db: Database | asyncpg.Connection, function_id: uuid.UUID,
                         user_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow(FETCH_FUNCTION, function_id, user_id)


async def fetch_deployments(db: Database | asyncpg.Connection,
                            function_id: uuid.UUID) -> list[asyncpg.Record]:
    return await db.fetch(FETCH_DEPLOYMENTS, function_id)


async def clear_deployment_image(db: Database, deployment_id: uuid.UUID) -> None:
    """Record that a deployment's image was removed."""
    await db.execute(CLEAR_DEPLOYMENT_IMAGE, deployment_id)


async def delete_function(db: Database, function_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    return await db.fetchval(DELETE_FUNCTION, function_id, user_id) is not None
