"""The 2-minute form of `make soak`: the whole graph (own namespace, UI off) under back-to-back
capture -> refocus cycles, as a client following the README runs them: every cycle succeeds first
time, its refocus renders the sequence just captured (sequence_id 0 = latest announced), its depth
map arrives, no goal has to be sent again; the report and the memory plot are written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_two_minutes_of_cycles_lose_nothing(tmp_path: Path) -> None:
    out = tmp_path / "soak"
    run = subprocess.run([sys.executable, "-m", "dfocus_bringup.cli", "soak", "--duration", "120", "--out", str(out),
                          "--namespace", "/soaktest"], capture_output=True, text=True, timeout=400)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-5000:]
    report = (out / "soak.md").read_text()
    row = re.search(r"^\| (\d+) \| (\d+) \| (\d+) \| (\d+) \|", report, re.M)
    assert row, report
    cycles, failed, lost, resent = (int(g) for g in row.groups())
    assert cycles >= 3 and (failed, lost, resent) == (0, 0, 0), report
    nodes = re.findall(r"^\| (\w+) \| \d+ \| \d+ \| \d+ \|", report, re.M)
    assert {"camera_array", "sequencer", "depth", "refocus"} <= set(nodes), report
    assert (out / "soak_memory.png").stat().st_size > 10_000
