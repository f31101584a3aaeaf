"""The real Dart toolchain: build and run examples/hello from the dart:stable image."""

from __future__ import annotations

import docker
import pytest

from support import REPO, deploy_ready, register, tar_gz

DART_IMAGE = "dart:stable"

pytestmark = pytest.mark.dart_sdk


@pytest.fixture
def dart_server(start_server, docker_client, tmp_path):
    try:
        docker_client.images.get(DART_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.skip(f"{DART_IMAGE} is not present on this Docker host and tests never pull; "
                    f"run `docker pull {DART_IMAGE}` to include this test")
    return start_server(dart_image=DART_IMAGE, data_dir=tmp_path, build_timeout=600.0,
                        function_timeout=30.0)


def test_hello_example_greets_caller(dart_server):
    root = REPO / "examples" / "hello"
    files = {str(path.relative_to(root)): path.read_bytes()
             for path in root.rglob("*") if path.is_file()}
    with dart_server.client() as anonymous:
        account = register(anonymous)

    with dart_server.client(account["token"], timeout=120) as client:
        function_id = deploy_ready(client, "hello", tar_gz(files))["id"]
        result = client.post(f"/api/functions/{function_id}/invoke", json={"name": "Dart"}).json()

    assert result["status"] == "success"
    assert result["result"]["message"] == "Hello, Dart!"
    assert "T" in result["result"]["timestamp"]
