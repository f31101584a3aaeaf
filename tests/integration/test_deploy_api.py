"""Deploying archives into images with the stand-in toolchain, over real HTTP."""

from __future__ import annotations

import concurrent.futures
import gzip
import io
import os
import subprocess
import tarfile
import time
import uuid

import docker
import pytest

from support import (
    deploy,
    deploy_ready,
    fixture_archive,
    fixture_files,
    register,
    tar_gz,
    wait_for_deployment,
)

HELLO = {"pubspec.yaml": "name: hello\n", "bin/main.dart": "void main() {}\n"}


def _link(kind: bytes, name: str, target: str):
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = target
        tar.addfile(info)
    return add


def _special(kind: bytes, name: str):
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.devmajor, info.devminor = 1, 3
        tar.addfile(info)
    return add


def _gzip_bomb() -> bytes:
    """A 100 KB archive whose single member contains 100 MiB of zeros."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9) as compressed:
        with tarfile.open(fileobj=compressed, mode="w|") as tar:
            info = tarfile.TarInfo("zeros.bin")
            info.size = 100 * 1024 * 1024
            tar.addfile(info, _Zeros(info.size))
    return buffer.getvalue()


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readinto(self, buffer) -> int:
        count = min(len(buffer), self.left)
        buffer[:count] = bytes(count)
        self.left -= count
        return count


def _truncated() -> bytes:
    whole = tar_gz({**HELLO, "data.bin": bytes(range(256)) * 400})
    return whole[: len(whole) // 2]


REJECTIONS = {
    "absolute path": (tar_gz({**HELLO, "/etc/evil": "x"}), 422, "invalid_archive", "/etc/evil"),
    "dot-dot component": (tar_gz({**HELLO, "bin/../../evil": "x"}), 422, "invalid_archive", ".."),
    "symlink": (tar_gz(HELLO, extra=_link(tarfile.SYMTYPE, "bin/link", "/etc/passwd")), 422,
                "invalid_archive", "link"),
    "hardlink": (tar_gz(HELLO, extra=_link(tarfile.LNKTYPE, "bin/hard", "pubspec.yaml")), 422,
                 "invalid_archive", "link"),
    "character device": (tar_gz(HELLO, extra=_special(tarfile.CHRTYPE, "null")), 422,
                         "invalid_archive", "device"),
    "fifo": (tar_gz(HELLO, extra=_special(tarfile.FIFOTYPE, "pipe")), 422, "invalid_archive",
             "FIFO"),
    "too many files": (tar_gz({**HELLO, **{f"lib/f{i}.dart": "" for i in range(30)}}), 413,
                       "archive_too_large", "members"),
    "gzip bomb": (_gzip_bomb(), 413, "archive_too_large", "unpacks to more than"),
    "compressed size": (tar_gz({**HELLO, "noise.bin": os.urandom(300_000)}), 413,
                        "archive_too_large", "MAX_ARCHIVE_BYTES"),
    "not gzip": (b"PK\x03\x04 this is a zip file", 400, "corrupt_archive", "gzip"),
    "gzip but not tar": (gzip.compress(b"plain text, not a tar archive" * 40), 400,
                         "corrupt_archive", "corrupt"),
    "cut short": (_truncated(), 400, "corrupt_archive", "cut short"),
    "no pubspec": (tar_gz({"bin/main.dart": "void main() {}\n"}), 422, "invalid_archive",
                   "pubspec.yaml"),
    "no entry point": (tar_gz({"pubspec.yaml": "name: x\n", "lib/x.dart": ""}), 422,
                       "invalid_archive", "bin/main.dart"),
    "invalid yaml": (tar_gz({**HELLO, "pubspec.yaml": "name: [unclosed\n"}), 422,
                     "invalid_archive", "not valid YAML"),
    "pubspec without name": (tar_gz({**HELLO, "pubspec.yaml": "version: 1.0.0\n"}), 422,
                             "invalid_archive", "name"),
    "empty archive": (tar_gz({}), 422, "invalid_archive", "empty"),
}


@pytest.fixture
def small_limits_server(start_server, tmp_path):
    return start_server(data_dir=tmp_path, max_archive_files=20, max_archive_bytes=200_000,
                        max_unpacked_bytes=10 * 1024 * 1024)


def _assert_no_trace(sql, user_id: str, functions_dir) -> None:
    rows = sql("SELECT count(*) AS n FROM functions WHERE user_id = $1", uuid.UUID(user_id))
    assert rows[0]["n"] == 0
    leftovers = [path for path in functions_dir.rglob("*") if ".staging" not in path.parts]
    staged = [path for path in (functions_dir / ".staging").rglob("*")]
    assert leftovers == []
    assert staged == []


@pytest.mark.parametrize("case", sorted(REJECTIONS))
def test_deploy_rejects_bad_archive(small_limits_server, sql, case):
    archive, status, code, fragment = REJECTIONS[case]
    with small_limits_server.client() as anonymous:
        account = register(anonymous)

    with small_limits_server.client(account["token"]) as client:
        response = deploy(client, "rejected", archive)

    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert fragment in response.json()["error"]["message"]
    _assert_no_trace(sql, account["user"]["id"], small_limits_server.settings.functions_root)


@pytest.mark.parametrize("name", ["", "Hello", "1abc", "has space", "a" * 64, "../x", "é"])
def test_deploy_rejects_invalid_name(client, user, sql, functions_dir, name):
    response = deploy(client, name, tar_gz(HELLO))

    assert response.status_code == 422
    assert response.json()["error"]["code"] in ("invalid_name", "missing_field")
    rows = sql("SELECT count(*) AS n FROM functions WHERE user_id = $1",
               uuid.UUID(user["user"]["id"]))
    assert rows[0]["n"] == 0


def test_deploy_requires_fields(client):
    no_archive = client.post("/api/functions/deploy", data={"name": "hello"},
                             files={"other": ("x.txt", b"x")})
    no_name = client.post("/api/functions/deploy",
                          files={"archive": ("f.tar.gz", tar_gz(HELLO), "application/gzip")})
    not_multipart = client.post("/api/functions/deploy", json={"name": "hello"})

    assert no_archive.status_code == 422
    assert "archive" in no_archive.json()["error"]["message"]
    assert no_name.status_code == 422
    assert "name" in no_name.json()["error"]["message"]
    assert not_multipart.status_code == 415


def test_deploy_requires_token(server):
    with server.client() as client:
        response = deploy(client, "hello", tar_gz(HELLO))

    assert response.status_code == 401


def test_deploy_builds_image_to_ready(client, docker_client, functions_dir):
    response = deploy(client, "hello", fixture_archive("echo"))

    assert response.status_code == 202
    accepted = response.json()
    assert accepted["status"] == "building"
    assert accepted["version"] == 1
    document = wait_for_deployment(client, accepted["id"], 1)
    assert document["status"] == "ready"
    assert document["active_version"] == 1
    image = docker_client.images.get(f"dartcloud-fn-{accepted['id']}:1")
    assert image.labels["dartcloud.function_id"] == accepted["id"]
    assert image.labels["dartcloud.deployment_id"] == accepted["deployment_id"]
    assert (functions_dir / accepted["id"] / "1" / "pubspec.yaml").is_file()

    logs = client.get(f"/api/functions/{accepted['id']}/logs", params={"level": "build"}).json()
    messages = [entry["message"] for entry in logs["logs"]]
    assert any("dart pub get" in message for message in messages)
    assert any("Got dependencies!" in message for message in messages)


def test_deploy_accepts_top_level_folder_and_root_entry(client):
    document = deploy_ready(client, "rooted", tar_gz(fixture_files("root_entry"), prefix="my_fn/"))

    assert document["deployments"][0]["entry_point"] == "main.dart"
    result = client.post(f"/api/functions/{document['id']}/invoke", json={}).json()
    assert result["result"] == {"entry": "main.dart"}


def test_deploy_archive_made_with_tar_czf(client, tmp_path):
    source = tmp_path / "hello"
    for relative, content in fixture_files("echo").items():
        (source / relative).parent.mkdir(parents=True, exist_ok=True)
        (source / relative).write_bytes(content)
    subprocess.run(["tar", "czf", str(tmp_path / "hello.tar.gz"), "-C", str(tmp_path), "hello"],
                   check=True)

    document = deploy_ready(client, "from-tar", (tmp_path / "hello.tar.gz").read_bytes())

    assert document["active_version"] == 1


@pytest.mark.parametrize("fixture, message", [
    ("missing_dependency", "missing_package_xyz"),
    ("compile_error", "COMPILE_ERROR"),
])
def test_deploy_build_failure_is_recorded(client, fixture, message):
    response = deploy(client, fixture.replace("_", "-"), fixture_archive(fixture))
    accepted = response.json()
    document = wait_for_deployment(client, accepted["id"], 1)

    assert document["status"] == "failed"
    assert document["active_version"] is None
    assert document["deployments"][0]["status"] == "failed"
    assert "build failed" in document["deployments"][0]["error"]
    assert message in document["deployments"][0]["error"]
    logs = client.get(f"/api/functions/{accepted['id']}/logs").json()["logs"]
    assert any(message in entry["message"] for entry in logs)
    assert not any("\x1b" in entry["message"] for entry in logs)
    invoke = client.post(f"/api/functions/{accepted['id']}/invoke", json={})
    assert invoke.status_code == 409
    assert "deploy it again" in invoke.json()["error"]["message"]


def test_deploy_without_base_image_explains_fix(start_server):
    missing = start_server(dart_image="dartcloud/no-such-dart-image:1")
    with missing.client() as anonymous:
        account = register(anonymous)

    with missing.client(account["token"]) as client:
        accepted = deploy(client, "hello", fixture_archive("echo")).json()
        document = wait_for_deployment(client, accepted["id"], 1)

    assert document["status"] == "failed"
    error = document["deployments"][0]["error"]
    assert "dartcloud/no-such-dart-image:1" in error
    assert "docker pull" in error
    assert "DART_IMAGE" in error


def test_redeploy_keeps_old_version_until_ready(client):
    first = deploy_ready(client, "versioned", fixture_archive("echo"))
    function_id = first["id"]

    second = deploy(client, "versioned", fixture_archive("json_result")).json()
    assert second["id"] == function_id
    assert second["version"] == 2
    during = client.get(f"/api/functions/{function_id}").json()
    assert during["active_version"] == 1
    assert client.post(f"/api/functions/{function_id}/invoke", json={"a": 1}).status_code == 200

    after = wait_for_deployment(client, function_id, 2)
    assert after["active_version"] == 2
    result = client.post(f"/api/functions/{function_id}/invoke", content=b'{"a": 1}',
                         headers={"Content-Type": "application/json"}).json()
    assert result["result"] == {"input_bytes": 8, "ok": True}


def test_failed_redeploy_leaves_old_version_active(client):
    first = deploy_ready(client, "stable", fixture_archive("echo"))

    broken = deploy(client, "stable", fixture_archive("compile_error")).json()
    document = wait_for_deployment(client, first["id"], broken["version"])

    assert document["status"] == "ready"
    assert document["active_version"] == 1
    versions = {item["version"]: item["status"] for item in document["deployments"]}
    assert versions == {1: "ready", 2: "failed"}
    result = client.post(f"/api/functions/{first['id']}/invoke", json={"still": "v1"}).json()
    assert result["result"] == {"still": "v1"}


def test_concurrent_deploys_of_one_name(client):
    archive = fixture_archive("echo")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda _: deploy(client, "racer", archive), range(4)))

    assert [response.status_code for response in responses] == [202] * 4
    ids = {response.json()["id"] for response in responses}
    versions = sorted(response.json()["version"] for response in responses)
    assert len(ids) == 1
    assert versions == [1, 2, 3, 4]
    function_id = ids.pop()
    for version in versions:
        document = wait_for_deployment(client, function_id, version)
    assert document["status"] == "ready"
    assert document["active_version"] == 4
    assert [item["status"] for item in document["deployments"]] == ["ready"] * 4


def test_delete_removes_rows_images_and_folders(client, docker_client, functions_dir, sql):
    document = deploy_ready(client, "doomed", fixture_archive("echo"))
    function_id = document["id"]
    client.post(f"/api/functions/{function_id}/invoke", json={})

    response = client.delete(f"/api/functions/{function_id}")

    assert response.status_code == 204
    assert not (functions_dir / function_id).exists()
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(f"dartcloud-fn-{function_id}:1")
    for table in ("deployments", "function_invocations", "function_logs"):
        rows = sql(f"SELECT count(*) AS n FROM {table} WHERE function_id = $1",
                   uuid.UUID(function_id))
        assert rows[0]["n"] == 0, table
    assert client.get(f"/api/functions/{function_id}").status_code == 404
    assert client.delete(f"/api/functions/{function_id}").status_code == 404


def test_list_shows_only_own_functions(server, client):
    deploy_ready(client, "mine", fixture_archive("echo"))
    with server.client() as anonymous:
        other = register(anonymous)
    with server.client(other["token"]) as other_client:
        listed = other_client.get("/api/functions").json()["functions"]

    assert listed == []
    names = [item["name"] for item in client.get("/api/functions").json()["functions"]]
    assert names == ["mine"]


def test_other_user_cannot_touch_function(server, client, docker_client):
    document = deploy_ready(client, "private", fixture_archive("echo"))
    function_id = document["id"]
    with server.client() as anonymous:
        intruder = register(anonymous)

    with server.client(intruder["token"]) as other:
        responses = {
            "get": other.get(f"/api/functions/{function_id}"),
            "logs": other.get(f"/api/functions/{function_id}/logs"),
            "invoke": other.post(f"/api/functions/{function_id}/invoke", json={}),
            "delete": other.delete(f"/api/functions/{function_id}"),
        }
        same_name = deploy(other, "private", fixture_archive("echo"))

    for action, response in responses.items():
        assert response.status_code == 404, action
        assert response.json()["error"]["code"] == "function_not_found", action
    assert same_name.status_code == 202
    assert same_name.json()["id"] != function_id
    assert client.get(f"/api/functions/{function_id}").json()["status"] == "ready"
    docker_client.images.get(f"dartcloud-fn-{function_id}:1")


@pytest.mark.parametrize("function_id", ["not-a-uuid", "1", "00000000-0000-0000-0000-00000000000g"])
def test_malformed_function_id_is_404(client, function_id):
    for response in (client.get(f"/api/functions/{function_id}"),
                     client.delete(f"/api/functions/{function_id}"),
                     client.post(f"/api/functions/{function_id}/invoke", json={}),
                     client.get(f"/api/functions/{function_id}/logs")):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "function_not_found"


def test_build_time_limit_stops_build(start_server, tmp_path, docker_client):
    hurried = start_server(build_timeout=3.0, data_dir=tmp_path)
    with hurried.client() as anonymous:
        account = register(anonymous)

    started = time.monotonic()
    with hurried.client(account["token"]) as client:
        accepted = deploy(client, "slow", fixture_archive("slow_dependency")).json()
        document = wait_for_deployment(client, accepted["id"], 1, timeout=60)

    assert document["status"] == "failed"
    assert "time limit of 3 s" in document["deployments"][0]["error"]
    assert time.monotonic() - started < 30
    steps = docker_client.containers.list(
        all=True, filters={"label": f"dartcloud.build={accepted['deployment_id']}"})
    assert steps == []


def test_old_version_images_are_removed(client, docker_client):
    function_id = deploy_ready(client, "pruned", fixture_archive("echo"))["id"]
    for version in (2, 3):
        accepted = deploy(client, "pruned", fixture_archive("echo")).json()
        assert accepted["version"] == version
        wait_for_deployment(client, function_id, version)

    # The old image is removed, and then recorded as gone, just after the new version is ready.
    expected = {f"dartcloud-fn-{function_id}:2", f"dartcloud-fn-{function_id}:3"}
    deadline = time.monotonic() + 10
    while True:
        deployments = client.get(f"/api/functions/{function_id}").json()["deployments"]
        images = {item["version"]: item["image"] for item in deployments}
        if images[1] is None or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    tags = {tag for image in docker_client.images.list(
        filters={"label": f"dartcloud.function_id={function_id}"}) for tag in image.tags}
    assert tags == expected
    assert images == {1: None, 2: f"dartcloud-fn-{function_id}:2",
                      3: f"dartcloud-fn-{function_id}:3"}
    result = client.post(f"/api/functions/{function_id}/invoke", json={"v": 3}).json()
    assert result["result"] == {"v": 3}
