"""Issue 19, proof under faults: mixed load while a nemesis SIGKILLs and SIGSTOPs a
worker, the web, the broker and the store, then the checker on what the clients saw
(tests/chaos.py; `python -m tests.chaos --seconds 120` is the long run)."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from tests import chaos

# Short: the suite's time is nearly all spent; every target is hit in the first four
# faults, and a run this long has six or more.
SECONDS = 25.0


@pytest.mark.timeout(300)
def test_nothing_acknowledged_is_lost_nothing_is_late_under_faults(tmp_path: Path) -> None:
    seed = secrets.randbelow(2**32)
    report = chaos.run(tmp_path, SECONDS, seed)
    print(report.text())
    assert report.violations == [], f"{report.text()}\nlogs in {tmp_path}"
    faults = str(report.figures["faults by kind"])
    assert all(target in faults for target in chaos.TARGETS), faults
    assert int(report.figures["numbers acknowledged"]) > 0
    assert int(report.figures["events delivered"]) > 0
