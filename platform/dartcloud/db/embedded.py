"""The embedded PostgreSQL used when no DATABASE_URL is configured."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

logger = logging.getLogger(__name__)


def start_embedded(data_dir: Path) -> str:
    """Start (or reuse) a PostgreSQL server whose data lives in `data_dir/postgres`.

    Returns a connection URL. The server stops when the last process that
    started it exits. Its binaries come from the `pgserver` package; as root,
    pgserver runs them as its own unprivileged system user, because PostgreSQL
    refuses to run as root.
    """
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset, as it is under
        # root and in containers; pgserver then uses a folder in /tmp.
        warnings.simplefilter("ignore")
        import pgserver

        pgdata = (data_dir / "postgres").resolve()
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(pgdata, cleanup_mode="stop")

    logger.info("embedded PostgreSQL running", extra={"action": "db.embedded", "pgdata": str(pgdata)})
    return server.get_uri()
