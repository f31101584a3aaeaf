"""Invocation overhead of Dart Cloud against plain `docker run --rm`, measured in one run.

Starts the service with an embedded PostgreSQL in a temporary folder and
deploys the stand-in `echo` fixture. The platform is measured through HTTP
invoke, the baseline through `docker run --rm` of the same image with the same
limits and the same FUNCTION_INPUT. For both it measures:

- latency of N sequential calls (p50, p95, p99);
- throughput at concurrency 1, 4 and 16 for a fixed time.

Prints one table with the platform/baseline ratio per row, then where one
platform invocation spends its time (from the service's own DEBUG timings),
and as its last line `p50 ratio platform/baseline: <number>`. Exits 1 when
any call failed.

Environment: BENCH_CALLS (default 200) sequential calls per side,
BENCH_SECONDS (default 10) per throughput row, DART_STANDIN_IMAGE (default
dartcloud/dart-standin:test), which `make standin-image` builds.
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "functions" / "echo"
INPUT = json.dumps({"name": "Dart", "items": list(range(20))})
CONCURRENCY = (1, 4, 16)


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fixture_archive() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(FIXTURE, arcname=".")
    return buffer.getvalue()


class Service:
    """The platform as `python -m dartcloud` with its own data folder and embedded database."""

    def __init__(self, workdir: Path, image: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "service.log"
        self.environment = {
            **{key: value for key, value in os.environ.items()
               if key not in ("DATABASE_URL", "JWT_SECRET")},
            "PORT": str(self.port), "HOST": "127.0.0.1", "DATA_DIR": str(workdir / "data"),
            "DART_IMAGE": image, "BCRYPT_ROUNDS": "4", "LOG_LEVEL": "DEBUG",
            "INSTANCE_ID": f"bench-{os.getpid()}",
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "dartcloud"],
                                            env=self.environment, stdout=log,
                                            stderr=subprocess.STDOUT, cwd=self.log_path.parent)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit("bench: the service exited:\n" + self.log_path.read_text())
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise SystemExit("bench: the service did not become healthy within 60 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)


def deploy_echo(service: Service) -> tuple[str, str, str]:
    """Register, deploy the echo fixture and wait for it; return (token, function id, image)."""
    with httpx.Client(base_url=service.url, timeout=60) as client:
        account = client.post("/api/auth/register",
                              json={"email": "bench@example.com", "password": "benchmark"}).json()
        client.headers["Authorization"] = f"Bearer {account['token']}"
        accepted = client.post("/api/functions/deploy", data={"name": "echo"},
                               files={"archive": ("echo.tar.gz", fixture_archive())}).json()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            document = client.get(f"/api/functions/{accepted['id']}").json()
            if document["status"] != "building":
                break
            time.sleep(0.2)
        if document["status"] != "ready":
            raise SystemExit(f"bench: the echo fixture did not build: {document}")
        image = document["deployments"][0]["image"]
    return account["token"], accepted["id"], image


def delete_function(service: Service, token: str, function_id: str) -> None:
    """Delete the benchmark's function, which removes its image too."""
    response = httpx.delete(f"{service.url}/api/functions/{function_id}",
                            headers={"Authorization": f"Bearer {token}"}, timeout=60)
    if response.status_code != 204:
        raise SystemExit(f"bench: deleting the function failed: {response.text}")


class Platform:
    name = "platform"

    def __init__(self, service: Service, token: str, function_id: str) -> None:
        self._url = f"{service.url}/api/functions/{function_id}/invoke"
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self._local = threading.local()

    def call(self) -> bool:
        # One keep-alive connection per thread, as a real client would hold.
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = httpx.Client(timeout=120)
        response = client.post(self._url, content=INPUT, headers=self._headers)
        return response.status_code == 200 and response.json().get("result") == json.loads(INPUT)


class Baseline:
    name = "docker run"

    def __init__(self, image: str) -> None:
        # The same image, limits and isolation that the platform gives each container.
        self._command = [
            "docker", "run", "--rm", "--network", "none", "--read-only",
            "--tmpfs", "/tmp:rw,nosuid,nodev,size=16m", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "--user", "65534:65534",
            "--ulimit", "nofile=1024:1024", "--init", "--memory", "128m",
            "--memory-swap", "128m", "--cpus", "0.5", "--pids-limit", "64",
            "--log-driver", "none", "-e", f"FUNCTION_INPUT={INPUT}", image,
        ]

    def call(self) -> bool:
        completed = subprocess.run(self._command, capture_output=True, timeout=120)
        return completed.returncode == 0 and json.loads(completed.stdout or b"null") == json.loads(INPUT)


def sequential(runner, calls: int) -> tuple[list[float], int]:
    latencies, errors = [], 0
    for _ in range(calls):
        started = time.perf_counter()
        try:
            ok = runner.call()
        except Exception:  # a failed call is counted, not fatal
            ok = False
        latencies.append((time.perf_counter() - started) * 1000)
        errors += not ok
    return latencies, errors


def throughput(runner, concurrency: int, seconds: float) -> tuple[float, int]:
    deadline = time.monotonic() + seconds
    counts = {"done": 0, "errors": 0}
    lock = threading.Lock()

    def worker() -> None:
        while time.monotonic() < deadline:
            try:
                ok = runner.call()
            except Exception:  # a failed call is counted, not fatal
                ok = False
            with lock:
                counts["done"] += 1
                counts["errors"] += not ok

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    elapsed = time.monotonic() - started
    return (counts["done"] - counts["errors"]) / elapsed, counts["errors"]


def phase_breakdown(log_path: Path, start: int, end: int) -> dict[str, float]:
    """Median of each phase the service logged at DEBUG between two byte offsets of its log."""
    samples: dict[str, list[float]] = {}
    request_times: list[float] = []
    with log_path.open("rb") as log:
        log.seek(start)
        text = log.read(end - start).decode(errors="replace")
    for line in text.splitlines():
        if "action=invoke.phases" in line or "action=invoke.removed" in line:
            for name, value in re.findall(r"(\w+)_ms=([\d.]+)", line):
                samples.setdefault(name, []).append(float(value))
        match = re.search(r"POST /api/functions/\S+/invoke 200 ([\d.]+)ms", line)
        if match:
            request_times.append(float(match.group(1)))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    if request_times:
        medians["request"] = statistics.median(request_times)
    return medians


def main() -> int:
    calls = int(os.environ.get("BENCH_CALLS", "200"))
    seconds = float(os.environ.get("BENCH_SECONDS", "10"))
    image = os.environ.get("DART_STANDIN_IMAGE", "dartcloud/dart-standin:test")

    with tempfile.TemporaryDirectory(prefix="dartcloud-bench-") as workdir:
        service = Service(Path(workdir), image)
        service.start()
        try:
            token, function_id, function_image = deploy_echo(service)
            platform, baseline = Platform(service, token, function_id), Baseline(function_image)
            for runner in (platform, baseline):
                sequential(runner, min(5, calls))  # warm-up, not measured

            rows, failed = [], 0
            latency = {}
            for runner in (platform, baseline):
                # The phase breakdown covers the sequential platform calls only,
                # because under concurrency the phases wait on each other.
                log_start = service.log_path.stat().st_size
                latency[runner.name], errors = sequential(runner, calls)
                failed += errors
                if runner is platform:
                    time.sleep(0.5)  # let background removals log their timings
                    log_span = (log_start, service.log_path.stat().st_size)
            for label, fraction in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
                mine = percentile(latency["platform"], fraction)
                theirs = percentile(latency["docker run"], fraction)
                rows.append((f"latency {label} (ms, {calls} calls)", mine, theirs, mine / theirs))
            for concurrency in CONCURRENCY:
                mine, mine_errors = throughput(platform, concurrency, seconds)
                theirs, their_errors = throughput(baseline, concurrency, seconds)
                failed += mine_errors + their_errors
                rows.append((f"throughput c={concurrency} (calls/s, errors {mine_errors}/{their_errors})",
                             mine, theirs, mine / theirs if theirs else float("nan")))
            delete_function(service, token, function_id)
        finally:
            service.stop()
        phases = phase_breakdown(service.log_path, *log_span)

    print(f"{'measure':<44} {'platform':>10} {'docker run':>11} {'ratio':>7}")
    for label, mine, theirs, ratio in rows:
        print(f"{label:<44} {mine:>10.1f} {theirs:>11.1f} {ratio:>7.2f}")
    print()
    print(f"platform invocation, median per phase over the {calls} sequential calls (ms):")
    for name in ("request", "create", "attach", "start", "run", "wait", "record", "remove"):
        if name in phases:
            print(f"  {name:<8} {phases[name]:>8.2f}")
    print(f"failed calls: {failed}")
    print(f"p50 ratio platform/baseline: {rows[0][3]:.3f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
