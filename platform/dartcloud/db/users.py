"""SQL for the `users` table."""

from __future__ import annotations

import uuid

import asyncpg

from .database import Database

INSERT_USER = """
INSERT INTO users (email, password_hash) VALUES ($1, $2)
RETURNING id, email
"""
FETCH_USER_BY_EMAIL = """
SELECT id, email, password_hash FROM users WHERE lower(email) = lower($1)
"""
FETCH_USER_BY_ID = "SELECT id, email FROM users WHERE id = $1"


async def insert_user(db: Database, email: str, password_hash: str) -> asyncpg.Record | None:
    """Insert a user; return None when the email is taken in any letter case."""
    try:
        return await db.fetchrow(INSERT_USER, email, password_hash)
    except asyncpg.UniqueViolationError:
        return None


async def fetch_user_by_email(db: Database, email: str) -> asyncpg.Record | None:
    return await db.fetchrow(FETCH_USER_BY_EMAIL, email)


async def fetch_user_by_id(db: Database, user_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow(FETCH_USER_BY_ID, user_id)
