"""Smoke run of the benchmark script with a handful of calls, so that it cannot rot."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from support import REPO


def test_bench_script_runs_and_reports_ratio(standin_image):
    environment = {**os.environ, "BENCH_CALLS": "3", "BENCH_SECONDS": "1",
                   "DART_STANDIN_IMAGE": standin_image}

    completed = subprocess.run([sys.executable, str(REPO / "bench" / "invoke.py")],
                               env=environment, capture_output=True, text=True, timeout=300)

    assert completed.returncode == 0, completed.stdout + completed.stderr
    lines = completed.stdout.strip().splitlines()
    assert re.fullmatch(r"p50 ratio platform/baseline: \d+\.\d+", lines[-1])
    assert "failed calls: 0" in lines
    assert any(line.startswith("throughput c=16") for line in lines)
    assert any(line.strip().startswith("start") for line in lines)
