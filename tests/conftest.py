"""Session fixtures: a real PostgreSQL, a real Docker engine, the stand-in image, a live server.

With DATABASE_URL set, tests use that server; otherwise they start an
embedded PostgreSQL (pgserver) in a temporary folder. Every test session
works in a database of its own, created here and dropped at the end.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import subprocess
import uuid
import warnings
from pathlib import Path

import asyncpg
import docker
import pytest

from dartcloud.config import Settings
from dartcloud.engine import LABEL_INSTANCE
from support import REPO, STANDIN_IMAGE, ServerThread, register, run_sql


@pytest.fixture(scope="session")
def postgres_admin_url(tmp_path_factory) -> str:
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        server = pgserver.get_server(tmp_path_factory.mktemp("pgdata"), cleanup_mode="delete")
    yield server.get_uri()
    server.cleanup()


def _with_database(url: str, name: str) -> str:
    """Return `url` pointing at database `name`, keeping host and query options."""
    base, _, query = url.partition("?")
    scheme, _, rest = base.partition("://")
    authority = rest.split("/", 1)[0]
    return f"{scheme}://{authority}/{name}" + (f"?{query}" if query else "")


@pytest.fixture(scope="session")
def create_database(postgres_admin_url):
    """Factory: create a fresh, empty database and return its URL; all are dropped at the end."""
    created: list[str] = []

    def create() -> str:
        name = f"dartcloud_test_{uuid.uuid4().hex[:12]}"
        run_sql(postgres_admin_url, f'CREATE DATABASE "{name}"')
        created.append(name)
        return _with_database(postgres_admin_url, name)

    yield create
    for name in created:
        run_sql(postgres_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def docker_client():
    client = docker.from_env()
    try:
        client.ping()
    except docker.errors.DockerException as error:
        pytest.exit(f"no Docker engine answers ({error}); start dockerd first", returncode=2)
    yield client
    client.close()


@pytest.fixture(scope="session")
def standin_image(docker_client) -> str:
    try:
        docker_client.images.get(STANDIN_IMAGE)
    except docker.errors.ImageNotFound:
        subprocess.run(["sh", str(REPO / "images" / "standin" / "build.sh")], check=True)
    return STANDIN_IMAGE


@pytest.fixture(scope="session")
def base_settings(tmp_path_factory, standin_image) -> Settings:
    data_dir = tmp_path_factory.mktemp("data")
    return Settings(
        data_dir=data_dir,
        jwt_secret=secrets.token_urlsafe(48),
        bcrypt_rounds=4,
        dart_image=standin_image,
        instance_id=f"test-{uuid.uuid4().hex[:8]}",
        function_timeout=3.0,
        build_timeout=120.0,
        max_concurrent_invocations=48,
        max_concurrent_per_function=32,
    )


@pytest.fixture(scope="session")
def database_url(create_database) -> str:
    return create_database()


@pytest.fixture(scope="session")
def server(base_settings, database_url, docker_client):
    """The app under test, shared by the session; its containers are checked at the end."""
    settings = dataclasses.replace(base_settings, database_url=database_url)
    running = ServerThread(settings).start()
    yield running
    running.stop()

    # Every server and service the tests start uses an instance id that starts with "test-".
    labelled = docker_client.containers.list(all=True, filters={"label": LABEL_INSTANCE})
    leftovers = [container.name for container in labelled
                 if container.labels[LABEL_INSTANCE].startswith("test-")]

    # The test databases are dropped, so the images of their functions go too.
    for image in docker_client.images.list(filters={"label": LABEL_INSTANCE}):
        if image.labels.get(LABEL_INSTANCE, "").startswith("test-"):
            docker_client.images.remove(image.id, force=True)
    assert leftovers == [], f"containers left behind: {leftovers}"


@pytest.fixture
def start_server(base_settings, database_url):
    """Factory for extra servers with changed settings, stopped after the test."""
    started: list[ServerThread] = []

    def start(**changes) -> ServerThread:
        changes.setdefault("database_url", database_url)
        changes.setdefault("instance_id", f"test-{uuid.uuid4().hex[:8]}")
        running = ServerThread(dataclasses.replace(base_settings, **changes)).start()
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def user(server) -> dict:
    with server.client() as client:
        return register(client)


@pytest.fixture
def client(server, user):
    with server.client(user["token"]) as authorized:
        yield authorized


@pytest.fixture
def sql(database_url):
    def query(statement: str, *args) -> list[asyncpg.Record]:
        return run_sql(database_url, statement, *args)

    return query


@pytest.fixture
def functions_dir(base_settings) -> Path:
    return base_settings.functions_root
