"""The benchmark runs and reports; its timings are not judged here (CI machines are noisy)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import ROOT


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m ARGS` from the repository; it must exit 0."""
    result = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.mark.timeout(300)
def test_short_benchmark_prints_table_and_writes_plot(tmp_path: Path) -> None:
    # "naive + our worker" is the two parts below combined: left to the full runs.
    systems = "endcontact,naive,direct"
    run_module("bench", "--short", "--systems", systems, "--out", str(tmp_path))
    table = (tmp_path / "results.md").read_text()
    for system in ("| endcontact | 1 |", "| naive | 4 |", "| direct | 1 |", "| celery floor | 1 |"):
        assert system in table
    assert "drain ceiling" in table
    assert "c=1 p50 / Celery floor p50" in table
    # Past saturation (32 clients in the short run), each answer timed from its sending.
    assert "c=32 slowest answer ms" in table
    assert "| 32 |" in table.split("past saturation")[1]
    assert (tmp_path / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.timeout(120)
def test_cpu_benchmark_runs_and_prints_its_figures() -> None:
    result = run_module("bench.cpu", "--clients", "2", "--seconds", "1")
    assert "endcontact, 2 clients:" in result.stdout
    for part in ("web", "workers", "store", "broker", "load generator", "cores busy"):
        assert part in result.stdout


@pytest.mark.timeout(120)
def test_expired_benchmark_runs_and_prints_its_figures() -> None:
    result = run_module("bench.expired", "--tasks", "500", "--workers", "1")
    assert "500 expired tasks, 1 workers:" in result.stdout
    assert "discarded a second" in result.stdout
    assert "µs of the workers' CPU each" in result.stdout


@pytest.mark.timeout(300)
def test_reads_benchmark_runs_and_prints_its_figures() -> None:
    result = run_module("bench.reads", "3000", "1")
    figures = (
        "check e164 p50 ms:",
        "page of 1000 p50 ms:",
        "feed page of 1000 p50 ms:",
        "store bytes per mark with its event (feed and history):",
        "export rows/s:",
    )
    for figure in figures:
        assert figure in result.stdout
    assert "export 3,000 rows" in result.stdout


@pytest.mark.timeout(300)
def test_webhooks_benchmark_runs_and_prints_its_figures() -> None:
    result = run_module("bench.webhooks", "--short")
    for figure in (
        "delivery latency after the 201, 5 events one at a time: p50",
        "100 events to one fast receiver:",
        "end-contact at 16 client(s), numbers/s, median of 1: without webhooks",
        "end-contact at 1 client(s), numbers/s, median of 1: without webhooks",
    ):
        assert figure in result.stdout


@pytest.mark.timeout(120)
def test_senders_benchmark_runs_and_prints_its_figures() -> None:
    result = run_module("bench.senders", "200")
    assert "httpx.Client:" in result.stdout
    assert "worker.senders:" in result.stdout
