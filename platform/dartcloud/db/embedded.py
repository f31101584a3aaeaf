"""The embedded PostgreSQL used when no DATABASE_URL is configured."""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# pgserver records every process that uses a server in this file and stops
# the server when the last one leaves (pgserver 0.1.4, postgres_server.py).
_HANDLES_FILE = ".handle_pids.json"


class EmbeddedPostgres:
    """A PostgreSQL server whose data lives in `data_dir/postgres`, started on `start()`.

    `stop()` releases this process's hold on it, and the server stops when no
    other live process uses it. The binaries come from the `pgserver` package.
    As root, pgserver runs them as its own unprivileged system user, because
    PostgreSQL refuses to run as root.
    """

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = (data_dir / "postgres").resolve()
        self._server: Any = None

    def start(self) -> str:
        """Start or reuse the server and return its connection URL."""
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._forget_dead_processes()
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset, as it is under
            # root and in containers; pgserver then uses a folder in /tmp.
            warnings.simplefilter("ignore")
            import pgserver

            self._server = pgserver.get_server(self.pgdata, cleanup_mode="stop")
        logger.info("embedded PostgreSQL running", extra={
            "action": "db.embedded", "pgdata": str(self.pgdata)})
        return self._server.get_uri()

    def stop(self) -> None:
        # pgserver also does this at exit, but uvicorn ends the process by
        # raising the signal it caught, and then exit handlers do not run.
        if self._server is not None:
            server, self._server = self._server, None
            server.cleanup()
            logger.info("released the embedded PostgreSQL; it stops unless another process uses it",
                        extra={"action": "db.embedded_stop", "pgdata": str(self.pgdata)})

    def _forget_dead_processes(self) -> None:
        """Drop processes that died without releasing the server, such as a killed service.

        Otherwise pgserver counts them as users forever and never stops the server.
        """
        path = self.pgdata / _HANDLES_FILE
        try:
            pids = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        alive = [pid for pid in pids if isinstance(pid, int) and _is_alive(pid)]
        if alive != pids:
            path.write_text(json.dumps(alive))


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
