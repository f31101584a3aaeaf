"""Smoke run of the benchmark script with a handful of calls, so that it cannot rot."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from support import REPO


def test_bench_script_runs_and_reports_ratio(standin_image, docker_client):
    environment = {**os.environ, "BENCH_CALLS": "3", "BENCH_SECONDS": "1",
                   "DART_STANDIN_IMAGE": standin_image}

    bench = subprocess.Popen([sys.executable, str(REPO / "bench" / "invoke.py")], env=environment,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = bench.communicate(timeout=300)

    assert bench.returncode == 0, stdout + stderr
    lines = stdout.strip().splitlines()
    assert re.fullmatch(r"p50 ratio platform/baseline: \d+\.\d+", lines[-1])
    assert lines[-2] == "failed calls: 0"
    assert any(line.startswith("throughput c=16") for line in lines)
    assert any(line.strip().startswith("start") for line in lines)
    # The service the script starts labels its images with its own instance id.
    leftovers = docker_client.images.list(filters={"label": f"dartcloud.instance=bench-{bench.pid}"})
    assert leftovers == []
