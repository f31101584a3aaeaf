"""The database layer: the connection pool, migrations and every SQL statement."""

from .database import Database

__all__ = ["Database"]
