"""Invocations in fresh, limited containers, over real HTTP against a real Docker engine."""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time
import uuid

import httpx
import pytest

from dartcloud.config import MAX_INPUT_BYTES
from support import deploy, deploy_ready, fixture_archive, register

JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def owner(server):
    with server.client() as client:
        return register(client)


@pytest.fixture(scope="module")
def owner_client(server, owner):
    with server.client(owner["token"], timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def functions(owner_client) -> dict[str, str]:
    """Deploy every invoke fixture once for this module; map fixture name to function id."""
    names = ["echo", "json_result", "exit_code", "sleeper", "memory_hog", "fork_bomb",
             "big_output", "stderr_lines", "network_probe", "sandbox_probe", "env_dump",
             "stdin_reader", "raw_output", "bad_utf8"]
    accepted = {}
    for name in names:
        response = deploy(owner_client, name.replace("_", "-"), fixture_archive(name))
        assert response.status_code == 202, response.text
        accepted[name] = response.json()["id"]
    for name, function_id in accepted.items():
        deadline = time.monotonic() + 120
        while owner_client.get(f"/api/functions/{function_id}").json()["status"] == "building":
            assert time.monotonic() < deadline, name
            time.sleep(0.2)
        assert owner_client.get(f"/api/functions/{function_id}").json()["status"] == "ready", name
    return accepted


def invoke(client, function_id: str, body: bytes | None = None, **kwargs):
    if body is None:
        return client.post(f"/api/functions/{function_id}/invoke", **kwargs)
    return client.post(f"/api/functions/{function_id}/invoke", content=body, headers=JSON,
                       **kwargs)


def test_invoke_echoes_input_unchanged(owner_client, functions):
    body = b'{"name": "Dart",  "nested": {"list": [1, 2.5, null]}, "text": "caf\xc3\xa9"}'

    response = invoke(owner_client, functions["echo"], body)

    assert response.status_code == 200
    result = response.json()
    assert result["status"] == "success"
    assert result["exit_code"] == 0
    assert result["result"] == json.loads(body)
    assert result["stdout_truncated"] is False
    assert result["error"] is None
    assert uuid.UUID(result["invocation_id"])
    assert result["duration_ms"] >= 0


def test_invoke_empty_body_means_empty_object(owner_client, functions):
    result = invoke(owner_client, functions["echo"]).json()

    assert result["result"] == {}


def test_invoke_returns_json_result(owner_client, functions):
    result = invoke(owner_client, functions["json_result"], b'{"k": "v"}').json()

    assert result["result"] == {"input_bytes": 10, "ok": True}


def test_invoke_nonzero_exit_is_error(owner_client, functions, sql):
    response = invoke(owner_client, functions["exit_code"], b"{}")

    assert response.status_code == 200
    result = response.json()
    assert result["status"] == "error"
    assert result["exit_code"] == 3
    assert "exited with code 3" in result["error"]
    assert "something went wrong: code 3" in result["error"]
    row = sql("SELECT status, exit_code, error FROM function_invocations WHERE id = $1",
              uuid.UUID(result["invocation_id"]))[0]
    assert row["status"] == "error"
    assert row["exit_code"] == 3


def test_invoke_timeout_kills_container(owner_client, functions, server, docker_client):
    started = time.monotonic()
    result = invoke(owner_client, functions["sleeper"], b"{}").json()
    elapsed = time.monotonic() - started

    timeout = server.settings.function_timeout
    assert result["status"] == "timeout"
    assert "time limit" in result["error"]
    assert timeout <= elapsed < timeout + 3
    assert timeout * 1000 <= result["duration_ms"] < (timeout + 3) * 1000
    time.sleep(0.5)
    containers = docker_client.containers.list(
        all=True, filters={"label": f"dartcloud.invocation_id={result['invocation_id']}"})
    assert containers == []


def test_invoke_memory_hog_hits_limit(owner_client, functions):
    result = invoke(owner_client, functions["memory_hog"], b"{}").json()

    assert result["status"] == "error"
    assert result["exit_code"] == 137
    assert "memory limit" in result["error"]


def test_invoke_fork_bomb_contained_by_pid_limit(owner_client, functions):
    started = time.monotonic()
    result = invoke(owner_client, functions["fork_bomb"], b"{}").json()

    assert result["status"] == "error"
    assert "can't fork" in result["error"]
    assert time.monotonic() - started < 3
    assert invoke(owner_client, functions["echo"], b'{"after": "bomb"}').json()["status"] == "success"


def test_invoke_truncates_large_stdout(owner_client, functions, server, sql):
    result = invoke(owner_client, functions["big_output"], b"{}").json()

    cap = server.settings.function_output_bytes
    assert result["status"] == "success"
    assert result["stdout_truncated"] is True
    assert len(result["result"]) == cap
    assert set(result["result"]) == {"x"}
    row = sql("SELECT stdout_bytes, stderr_bytes FROM function_invocations WHERE id = $1",
              uuid.UUID(result["invocation_id"]))[0]
    assert row["stdout_bytes"] == 5_000_000
    stderr_rows = sql("SELECT message FROM function_logs WHERE invocation_id = $1 "
                      "AND level = 'stderr' ORDER BY id", uuid.UUID(result["invocation_id"]))
    cap = server.settings.function_log_lines
    assert len(stderr_rows) == cap + 1
    assert stderr_rows[0]["message"] == "stderr line 0"
    assert "19800 of 20000 lines omitted" in stderr_rows[cap // 2]["message"]
    assert stderr_rows[-1]["message"] == "stderr line 19999"


def test_invoke_stderr_goes_to_logs(owner_client, functions):
    result = invoke(owner_client, functions["stderr_lines"], b"{}").json()
    logs = owner_client.get(f"/api/functions/{functions['stderr_lines']}/logs").json()["logs"]

    assert result["result"] == {"done": True}
    own = [entry for entry in logs if entry["invocation_id"] == result["invocation_id"]]
    assert [entry["level"] for entry in own] == ["info", "stderr", "stderr"]
    assert [entry["message"] for entry in own[1:]] == ["second diagnostic", "first diagnostic"]
    assert result["invocation_id"] in own[0]["message"]


def test_invoke_has_no_network(owner_client, functions):
    result = invoke(owner_client, functions["network_probe"], b"{}").json()

    assert result["status"] == "success"
    assert result["result"]["interfaces"].split() == ["lo"]
    assert result["result"]["routes"] == 0


def test_invoke_network_enabled_by_operator(start_server, owner, functions):
    bridged = start_server(function_network="bridge")
    with bridged.client(owner["token"]) as client:
        result = invoke(client, functions["network_probe"], b"{}").json()

    assert "eth0" in result["result"]["interfaces"].split()


def test_invoke_sandbox_is_read_only_and_unprivileged(owner_client, functions):
    result = invoke(owner_client, functions["sandbox_probe"], b"{}").json()

    assert result["result"] == {"root": "read-only", "tmp": "writable", "uid": 65534,
                                "nofile": 1024}


def test_invoke_environment_has_no_platform_secrets(owner_client, functions, monkeypatch):
    body = b'{"probe": 1}'
    result = invoke(owner_client, functions["env_dump"], body).json()

    names = {line.split("=", 1)[0] for line in result["result"].splitlines() if "=" in line}
    assert f"FUNCTION_INPUT={body.decode()}" in result["result"].splitlines()
    assert "DATABASE_URL" not in names
    assert "JWT_SECRET" not in names
    assert not any(name.startswith(("DART_", "MAX_", "BCRYPT", "DATA_DIR")) for name in names)


def test_invoke_stdin_is_closed(owner_client, functions):
    result = invoke(owner_client, functions["stdin_reader"], b"{}").json()

    assert result["status"] == "success"
    assert result["result"] == {"stdin": "closed"}


def test_invoke_keeps_output_without_newline(owner_client, functions):
    result = invoke(owner_client, functions["raw_output"], b"{}").json()

    assert result["result"] == "no newline at the end"


def test_invoke_replaces_invalid_utf8(owner_client, functions):
    result = invoke(owner_client, functions["bad_utf8"], b"{}").json()

    assert result["status"] == "success"
    assert result["result"] == "ok \ufffd\ufffd done"


def test_invoke_largest_input_fits(owner_client, functions):
    body = b'"' + b"a" * (MAX_INPUT_BYTES - 2) + b'"'
    assert len(body) == 131_056

    result = invoke(owner_client, functions["json_result"], body).json()

    assert result["status"] == "success"
    assert result["result"]["input_bytes"] == 131_056


def test_invoke_input_over_limit_is_413(owner_client, functions):
    body = b'"' + b"a" * (MAX_INPUT_BYTES - 1) + b'"'
    assert len(body) == 131_057

    response = invoke(owner_client, functions["echo"], body)

    assert response.status_code == 413
    assert "131056" in response.json()["error"]["message"]


def test_invoke_invalid_json_is_400(owner_client, functions, sql):
    before = sql("SELECT count(*) AS n FROM function_invocations WHERE function_id = $1",
                 uuid.UUID(functions["echo"]))[0]["n"]

    response = invoke(owner_client, functions["echo"], b'{"unterminated": ')
    too_deep = invoke(owner_client, functions["echo"], b"[" * 100_000)
    not_utf8 = invoke(owner_client, functions["echo"], b'"\xff"')
    wrong_type = owner_client.post(f"/api/functions/{functions['echo']}/invoke",
                                   content=b'{"a": 1}', headers={"Content-Type": "text/csv"})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"
    assert too_deep.status_code == 400
    assert not_utf8.status_code == 400
    assert wrong_type.status_code == 415
    after = sql("SELECT count(*) AS n FROM function_invocations WHERE function_id = $1",
                uuid.UUID(functions["echo"]))[0]["n"]
    assert after == before


def test_invoke_concurrent_calls_all_recorded(owner_client, functions, sql):
    function_id = functions["json_result"]
    before = sql("SELECT count(*) AS n FROM function_invocations WHERE function_id = $1",
                 uuid.UUID(function_id))[0]["n"]

    def call(index: int):
        return invoke(owner_client, function_id, json.dumps({"i": index}).encode())

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(call, range(20)))

    assert [response.status_code for response in responses] == [200] * 20
    assert {response.json()["status"] for response in responses} == {"success"}
    ids = {response.json()["invocation_id"] for response in responses}
    assert len(ids) == 20
    rows = sql("SELECT id, status FROM function_invocations WHERE function_id = $1",
               uuid.UUID(function_id))
    assert len(rows) == before + 20
    recorded = {str(row["id"]): row["status"] for row in rows}
    assert all(recorded[invocation_id] == "success" for invocation_id in ids)


def test_invoke_over_concurrency_cap_is_429(start_server, owner, functions):
    capped = start_server(max_concurrent_per_function=1, function_timeout=5.0)
    with capped.client(owner["token"]) as client:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            slow = pool.submit(invoke, client, functions["sleeper"], b"{}")
            time.sleep(1.0)
            rejected = invoke(client, functions["sleeper"], b"{}")
            other_function = invoke(client, functions["echo"], b"{}")
            slow_result = slow.result()

    assert rejected.status_code == 429
    assert rejected.headers["retry-after"] == "1"
    assert rejected.json()["error"]["code"] == "too_many_requests"
    assert other_function.status_code == 200
    assert slow_result.json()["status"] == "timeout"


def test_invoke_not_ready_is_409(owner_client):
    response = deploy(owner_client, "never-ready", fixture_archive("compile_error"))
    function_id = response.json()["id"]

    result = invoke(owner_client, function_id, b"{}")

    assert result.status_code == 409
    assert result.json()["error"]["code"] == "function_not_ready"


def test_delete_during_invocation_stops_it(server, docker_client, sql):
    with server.client() as anonymous:
        account = register(anonymous)
    with server.client(account["token"], timeout=60) as client:
        function_id = deploy_ready(client, "deleted-mid-call", fixture_archive("sleeper"))["id"]
        outcome = {}
        caller = threading.Thread(
            target=lambda: outcome.setdefault("response", invoke(client, function_id, b"{}")))
        caller.start()
        time.sleep(1.0)
        started = time.monotonic()
        assert client.delete(f"/api/functions/{function_id}").status_code == 204
        caller.join(timeout=30)

    response = outcome["response"]
    assert response.status_code == 410
    assert response.json()["error"]["code"] == "function_deleted"
    assert time.monotonic() - started < server.settings.function_timeout
    time.sleep(0.5)
    containers = docker_client.containers.list(
        all=True, filters={"label": f"dartcloud.function_id={function_id}"})
    assert containers == []
    images = docker_client.images.list(filters={"label": f"dartcloud.function_id={function_id}"})
    assert images == []
    rows = sql("SELECT count(*) AS n FROM function_invocations WHERE function_id = $1",
               uuid.UUID(function_id))
    assert rows[0]["n"] == 0


def test_statistics_computed_from_invocations(server):
    with server.client() as anonymous:
        account = register(anonymous)
    with server.client(account["token"], timeout=60) as client:
        function_id = deploy_ready(client, "counted", fixture_archive("exit_code"))["id"]
        for _ in range(3):
            invoke(client, function_id, b"{}")
        document = client.get(f"/api/functions/{function_id}").json()

    statistics = document["statistics"]
    assert statistics["invocations"] == 3
    assert statistics["errors"] == 3
    assert statistics["successes"] == 0
    assert statistics["timeouts"] == 0
    durations = statistics["duration_ms"]
    assert 0 <= durations["p50"] <= durations["p95"] <= durations["p99"]
    assert statistics["last_invocation_at"] is not None


def test_logs_pagination_and_filters(owner_client, functions):
    function_id = functions["stderr_lines"]
    for _ in range(3):
        invoke(owner_client, function_id, b"{}")

    first = owner_client.get(f"/api/functions/{function_id}/logs", params={"limit": 2}).json()
    second = owner_client.get(f"/api/functions/{function_id}/logs",
                              params={"limit": 2, "before": first["next_before"]}).json()
    only_build = owner_client.get(f"/api/functions/{function_id}/logs",
                                  params={"level": "build", "limit": 1000}).json()

    assert len(first["logs"]) == 2
    assert first["logs"][0]["id"] > first["logs"][1]["id"] > second["logs"][0]["id"]
    assert {entry["level"] for entry in only_build["logs"]} == {"build"}
    assert only_build["next_before"] is None


def test_logs_full_last_page_has_no_cursor(owner_client, functions):
    function_id = functions["echo"]
    everything = owner_client.get(f"/api/functions/{function_id}/logs",
                                  params={"limit": 1000}).json()["logs"]

    exact = owner_client.get(f"/api/functions/{function_id}/logs",
                             params={"limit": len(everything)}).json()
    shorter = owner_client.get(f"/api/functions/{function_id}/logs",
                               params={"limit": len(everything) - 1}).json()

    assert len(exact["logs"]) == len(everything)
    assert exact["next_before"] is None
    assert shorter["next_before"] == everything[-2]["id"]


@pytest.mark.parametrize("params", [{"limit": "0"}, {"limit": "1001"}, {"limit": "ten"},
                                    {"before": "-1"}, {"level": "debug"}, {"page": "2"}])
def test_logs_invalid_parameter_is_422(owner_client, functions, params):
    response = owner_client.get(f"/api/functions/{functions['echo']}/logs", params=params)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_query"


def test_client_hang_up_still_cleans_up(owner_client, functions, server, docker_client, sql):
    function_id = functions["sleeper"]
    before = {row["id"] for row in sql("SELECT id FROM function_invocations WHERE function_id = $1",
                                       uuid.UUID(function_id))}

    with pytest.raises(httpx.ReadTimeout):
        owner_client.post(f"/api/functions/{function_id}/invoke", content=b"{}", headers=JSON,
                          timeout=0.5)
    time.sleep(server.settings.function_timeout + 1.5)

    rows = sql("SELECT id, status FROM function_invocations WHERE function_id = $1",
               uuid.UUID(function_id))
    new = [row for row in rows if row["id"] not in before]
    assert [row["status"] for row in new] == ["timeout"]
    containers = docker_client.containers.list(
        all=True, filters={"label": f"dartcloud.invocation_id={new[0]['id']}"})
    assert containers == []
