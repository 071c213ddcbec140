"""CI's smoke run of the benchmark harness: ``benchmarks/run.py --quick``.

It runs every mode once, small, against the rows CI can run (threadlisten,
the selectors floor, asyncio and, with a C compiler, the C limit and the
load generator), and writes its results.  This checks that the harness
works end to end and that every mode produced a measurement; it asserts no
figure: CI machines are too noisy for that, and the figures live in
docs/performance.md.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "benchmarks" / "run.py"

#: The quick run takes ~20 s on an idle 2-core machine; allow for a busy one.
RUN_TIMEOUT = 240


@pytest.mark.timeout(RUN_TIMEOUT + 30)
def test_quick_run_measures_every_mode(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--peers", "skip", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "bench.json").read_text())
    assert (tmp_path / "bench.md").read_text().startswith("# Benchmark results")
    assert "Burst" in proc.stdout  # the table went to the terminal

    have_cc = shutil.which("cc") is not None
    burst_rows = results["burst"]["rows"]
    expected = ["tl-threadsafe", "tl-plain", "selectors", "asyncio"]
    if have_cc:
        expected.append("c-epoll")
    for key in expected:
        row = burst_rows[key]
        assert row["errors"] == [], (key, row["errors"])
        assert row["rate"]["n"] == 1 and row["rate"]["median"] > 0, key
    assert {t["target"] for t in results["targets"]}  # reported, whatever they say

    if have_cc:
        for key in expected:
            steady = results["steady"]["rows"][key]
            assert steady["errors"] == [] and steady["rate"]["median"] > 0, key
            latency = results["latency"]["rows"][key]
            assert latency["errors"] == [] and latency["p50_us"]["median"] > 0, key
        control_rows = results["control"]["rows"]
        assert control_rows["cycle/2"]["ops"]["median"] > 0  # the control threads ran
        assert control_rows["none/0"]["rate"]["median"] > 0
    reuse = results["reuseport"]["rows"]
    assert sum(reuse["2"]["rounds"][0]["split"]) == results["reuseport"]["burst"]
    memory = results["memory"]["rows"]
    assert memory["tl-threadsafe"]["heap"] > memory["socket"]["heap"] > 0
    profile = results["profile"]
    assert profile["batches"]["mean_size"] > 0
    assert profile["points"]["total_per_connection"] > 0

    if _has_matplotlib():
        assert (tmp_path / "bench.png").stat().st_size > 0


def _has_matplotlib() -> bool:
    return importlib.util.find_spec("matplotlib") is not None
