"""Helpers shared by the tests: servers on loopback, archives, database access."""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import os
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import uvicorn

from dartcloud.app import create_app
from dartcloud.config import Settings

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "functions"
STANDIN_IMAGE = "dartcloud/dart-standin:test"


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def free_port() -> int:
    with free_socket() as sock:
        return sock.getsockname()[1]


class ServerThread:
    """The real app served by uvicorn on a loopback port, in a thread of the test process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self._socket = free_socket()
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        config = uvicorn.Config(self.app, log_config=None, access_log=False, lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": [self._socket]}, daemon=True)

    def start(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start; see the log above")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=60)
        self._socket.close()

    def client(self, token: str | None = None, timeout: float = 60.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)


class ServiceProcess:
    """`python -m dartcloud` in a child process, for tests that restart or kill the service."""

    def __init__(self, environment: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.environment = {**environment, "PORT": str(self.port), "HOST": "127.0.0.1"}
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self, wait: bool = True) -> ServiceProcess:
        environment = {key: value for key, value in os.environ.items()
                       if key not in ("DATABASE_URL", "JWT_SECRET")}
        environment.update(self.environment)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen([sys.executable, "-m", "dartcloud"], env=environment,
                                        stdout=log, stderr=subprocess.STDOUT, cwd=self.log_path.parent)
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited with {self.process.returncode}:\n"
                                   + self.log_path.read_text())
            try:
                httpx.get(self.url + "/health", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("the service did not answer in time:\n" + self.log_path.read_text())

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


def stop_embedded_postgres(data_dir: str | Path) -> None:
    """Stop an embedded PostgreSQL under `data_dir` if one still runs."""
    pgdata = Path(data_dir) / "postgres"
    if not (pgdata / "postmaster.pid").exists():
        return
    from pgserver._commands import pg_ctl

    options = {"user": "pgserver"} if os.geteuid() == 0 else {}
    try:
        pg_ctl(["-m", "immediate", "stop"], pgdata=pgdata, **options)
    except subprocess.CalledProcessError:
        pass  # already stopped: pg_ctl finds no running server


def run_sql(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    async def fetch() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(url)
        try:
            return await connection.fetch(query, *args)
        finally:
            await connection.close()

    # A thread of its own, so that async tests with a running loop can call this too.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, fetch()).result()


def tar_gz(files: dict[str, bytes | str], *, extra: Callable[[tarfile.TarFile], None] | None = None,
           prefix: str = "") -> bytes:
    """Build a gzip-compressed tar in memory from {path: content}."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(prefix + path)
            info.size = len(data)
            info.mode = 0o755 if path.endswith(".sh") else 0o644
            tar.addfile(info, io.BytesIO(data))
        if extra is not None:
            extra(tar)
    return buffer.getvalue()


def fixture_files(name: str) -> dict[str, bytes]:
    """Read a fixture function folder into {relative path: content}."""
    root = FIXTURES / name
    return {str(path.relative_to(root)): path.read_bytes()
            for path in sorted(root.rglob("*")) if path.is_file()}


def fixture_archive(name: str) -> bytes:
    return tar_gz(fixture_files(name))


def register(client: httpx.Client, email: str | None = None,
             password: str = "correct horse") -> dict:
    email = email or f"user-{uuid.uuid4().hex[:10]}@example.com"
    response = client.post("/api/auth/register", json={"email": email, "password": password})
    assert response.status_code == 201, response.text
    return {**response.json(), "email": email, "password": password}


def deploy(client: httpx.Client, name: str, archive: bytes) -> httpx.Response:
    return client.post("/api/functions/deploy", data={"name": name},
                       files={"archive": ("function.tar.gz", archive, "application/gzip")})


def wait_for_deployment(client: httpx.Client, function_id: str, version: int,
                        timeout: float = 120) -> dict:
    """Poll until the given version is no longer building; return the function document."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        document = client.get(f"/api/functions/{function_id}").json()
        versions = {item["version"]: item for item in document.get("deployments", [])}
        if versions.get(version, {}).get("status") not in (None, "building"):
            return document
        time.sleep(0.2)
    raise AssertionError(f"version {version} of {function_id} still building after {timeout}s")


def deploy_ready(client: httpx.Client, name: str, archive: bytes) -> dict:
    response = deploy(client, name, archive)
    assert response.status_code == 202, response.text
    accepted = response.json()
    document = wait_for_deployment(client, accepted["id"], accepted["version"])
    assert document["status"] == "ready", document
    return document
