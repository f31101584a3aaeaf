"""The service as a process: embedded database, restarts, configuration, health, recovery."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import uuid
import warnings
from pathlib import Path

import asyncpg
import httpx
import pytest

from dartcloud.db.migrations import apply_migrations
from support import (
    REPO,
    ServiceProcess,
    deploy_ready,
    fixture_archive,
    register,
    run_sql,
    stop_embedded_postgres,
)


@pytest.fixture
def service_env(tmp_path, standin_image) -> dict[str, str]:
    """Environment of a service that uses the embedded PostgreSQL under its own DATA_DIR."""
    return {
        "DATA_DIR": str(tmp_path / "data"),
        "DART_IMAGE": standin_image,
        "BCRYPT_ROUNDS": "4",
        "INSTANCE_ID": f"test-{uuid.uuid4().hex[:8]}",
        "FUNCTION_TIMEOUT": "20",
    }


@pytest.fixture
def services(tmp_path):
    started: list[ServiceProcess] = []

    def start(environment: dict[str, str]) -> ServiceProcess:
        service = ServiceProcess(environment, tmp_path / f"service-{len(started)}.log").start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()
    # A service killed with SIGKILL cannot stop its embedded PostgreSQL itself.
    for service in started:
        stop_embedded_postgres(service.environment["DATA_DIR"])


def _invoke_ignoring_errors(service: ServiceProcess, token: str, function_id: str) -> None:
    try:
        with service.client(token) as client:
            client.post(f"/api/functions/{function_id}/invoke")
    except httpx.TransportError:
        pass  # the test kills the service during this call


def test_embedded_data_survives_restart(services, service_env):
    first = services(service_env)
    with first.client() as client:
        account = register(client)
    first.stop()
    assert "service stopped" in first.log_path.read_text()
    assert not (Path(service_env["DATA_DIR"]) / "postgres" / "postmaster.pid").exists()

    second = services(service_env)
    with second.client() as client:
        response = client.post("/api/auth/login",
                               json={"email": account["email"], "password": account["password"]})

    assert response.status_code == 200
    assert response.json()["user"]["id"] == account["user"]["id"]


def test_generated_secret_survives_restart(services, service_env, tmp_path):
    first = services(service_env)
    with first.client() as client:
        account = register(client)
    first.stop()

    secret_file = tmp_path / "data" / "jwt_secret"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    assert "JWT_SECRET is not set" in (tmp_path / "service-0.log").read_text()
    second = services(service_env)
    with second.client(account["token"]) as client:
        assert client.get("/api/functions").status_code == 200


def test_service_log_has_no_secrets(services, service_env, tmp_path):
    service = services({**service_env, "JWT_SECRET": "s" * 40})
    with service.client() as client:
        account = register(client, password="very secret password")
        client.post("/api/auth/login", json={"email": account["email"], "password": "wrong one!"})
    with service.client(account["token"]) as client:
        client.get("/api/functions")
    service.stop()

    log = (tmp_path / "service-0.log").read_text()
    assert "POST /api/auth/register 201" in log
    assert "very secret password" not in log
    assert account["token"] not in log
    assert "s" * 40 not in log
    assert "$2b$" not in log


@pytest.mark.parametrize("variable, value, fragment", [
    ("PORT", "eighty", "PORT"),
    ("PORT", "70000", "1 to 65535"),
    ("JWT_SECRET", "too-short", "at least 32 bytes"),
    ("JWT_TTL", "-5", "JWT_TTL"),
    ("DATABASE_URL", "mysql://localhost/x", "postgresql://"),
    ("FUNCTION_CPUS", "zero", "FUNCTION_CPUS"),
    ("FUNCTION_NETWORK", "no-such-network", "no such network"),
])
def test_invalid_setting_stops_start(tmp_path, variable, value, fragment):
    environment = {"DATA_DIR": str(tmp_path), variable: value, "PATH": "/usr/bin:/bin"}

    completed = subprocess.run([sys.executable, "-m", "dartcloud"], env=environment, cwd=tmp_path,
                               capture_output=True, text=True, timeout=60)

    assert completed.returncode == 2
    assert variable in completed.stderr
    assert fragment in completed.stderr
    assert "too-short" not in completed.stderr


def test_env_file_is_read(tmp_path):
    (tmp_path / ".env").write_text("# settings\nPORT=not-a-port\n")

    completed = subprocess.run([sys.executable, "-m", "dartcloud"], cwd=tmp_path,
                               env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                               timeout=60)

    assert completed.returncode == 2
    assert "PORT='not-a-port'" in completed.stderr


COLUMNS = ("SELECT table_name, column_name, data_type FROM information_schema.columns "
           "WHERE table_schema = 'public' ORDER BY 1, 2")


async def test_migrations_applied_twice_change_nothing(create_database):
    url = create_database()

    first = await apply_migrations(url)
    connection = await asyncpg.connect(url)
    try:
        schema = await connection.fetch(COLUMNS)
        second = await apply_migrations(url)
        schema_after = await connection.fetch(COLUMNS)
        recorded = await connection.fetch("SELECT version FROM schema_migrations")
    finally:
        await connection.close()

    assert first == ["0001_initial"]
    assert second == []
    assert schema_after == schema
    assert [row["version"] for row in recorded] == ["0001_initial"]


def test_make_migrate_command(create_database):
    url = create_database()

    completed = subprocess.run([sys.executable, "-m", "dartcloud", "migrate"], cwd=REPO,
                               env={"DATABASE_URL": url, "PATH": "/usr/bin:/bin"},
                               capture_output=True, text=True, timeout=60)

    assert completed.returncode == 0, completed.stderr
    tables = {row["table_name"] for row in run_sql(
        url, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")}
    assert {"users", "functions", "deployments", "function_logs",
            "function_invocations"} <= tables


def test_health_reports_stopped_database(start_server, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        database = pgserver.get_server(tmp_path / "pg", cleanup_mode="delete")
    running = start_server(database_url=database.get_uri(), data_dir=tmp_path / "data")

    with running.client() as client:
        healthy = client.get("/health")
        database.cleanup()
        unhealthy = client.get("/health")

    assert healthy.status_code == 200
    assert healthy.json() == {"status": "ok", "database": "ok", "docker": "ok"}
    assert unhealthy.status_code == 503
    assert unhealthy.json()["database"] == "unavailable"
    assert unhealthy.json()["docker"] == "ok"


def test_restart_mid_call_leaves_nothing_behind(services, service_env, docker_client):
    first = services(service_env)
    with first.client() as client:
        account = register(client)
    with first.client(account["token"]) as client:
        function_id = deploy_ready(client, "sleepy", fixture_archive("sleeper"))["id"]
        caller = threading.Thread(target=_invoke_ignoring_errors,
                                  args=(first, account["token"], function_id))
        caller.start()
        label = f"dartcloud.function_id={function_id}"
        deadline = time.monotonic() + 20
        while not docker_client.containers.list(filters={"label": label}):
            assert time.monotonic() < deadline, "the invocation's container never started"
            time.sleep(0.1)
        first.stop(signal.SIGKILL)
        caller.join(timeout=30)

    assert docker_client.containers.list(all=True, filters={"label": label}) != []
    second = services(service_env)
    with second.client(account["token"]) as client:
        invocations = client.get(f"/api/functions/{function_id}").json()["statistics"]
        errors = client.get(f"/api/functions/{function_id}/logs", params={"level": "error"}).json()

    assert docker_client.containers.list(all=True, filters={"label": label}) == []
    assert invocations["invocations"] == 1
    assert invocations["running"] == 0
    assert invocations["errors"] == 1
    assert len(errors["logs"]) == 1
    assert "the service stopped during the invocation" in errors["logs"][0]["message"]
    assert errors["logs"][0]["invocation_id"] is not None
    # The killed first service must not keep the embedded database running forever.
    second.stop()
    assert not (Path(service_env["DATA_DIR"]) / "postgres" / "postmaster.pid").exists()


def test_unreachable_docker_stops_start(tmp_path):
    environment = {"DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin",
                   "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}

    completed = subprocess.run([sys.executable, "-m", "dartcloud"], env=environment, cwd=tmp_path,
                               capture_output=True, text=True, timeout=60)

    assert completed.returncode == 1
    assert "the Docker engine did not respond" in completed.stderr
    assert "DOCKER_HOST" in completed.stderr
