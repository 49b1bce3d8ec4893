"""`dfocus bench --only` re-runs the named suites and keeps the other suites' last results."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from dfocus_bringup import bench


def _suite(name: str, value: float, fail: bool = False) -> types.ModuleType:
    module = types.ModuleType(name)

    def run_benchmarks(quick: bool) -> list[dict[str, object]]:
        if fail:
            raise RuntimeError("sensor missing")
        return [{"name": f"{name} speed", "value": value, "unit": "ms", "target": "< 10"}]

    module.run_benchmarks = run_benchmarks  # type: ignore[attr-defined]
    return module


def test_only_keeps_the_other_suites_and_marks_when_each_ran(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("fake_a", 1.0), ("fake_b", 2.0)):
        monkeypatch.setitem(sys.modules, name, _suite(name, value))
    monkeypatch.setattr(bench, "SUITES", {"a": "fake_a", "b": "fake_b"})
    out = tmp_path / "results.md"
    assert bench.bench_command(["--out", str(out)]) == 0
    monkeypatch.setitem(sys.modules, "fake_a", _suite("fake_a", 3.0))
    monkeypatch.setitem(sys.modules, "fake_b", _suite("fake_b", 9.0, fail=True))
    assert bench.bench_command(["--only", "a", "--out", str(out)]) == 0  # b did not run, its failure is not seen
    results = json.loads(out.with_suffix(".json").read_text())
    assert [r["value"] for r in results["a"]] == [3.0]
    assert [r["value"] for r in results["b"]] == [2.0]
    assert all("measured" in r for rows in results.values() for r in rows)
    assert "## a (measured " in out.read_text() and "| fake_b speed | 2.0 |" in out.read_text()
    assert bench.bench_command(["--only", "b", "--out", str(out)]) == 1
    assert "sensor missing" in out.with_suffix(".json").read_text()
