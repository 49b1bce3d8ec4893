"""`dfocus bench`: run every package's benchmarks and write bench/results.md (+ .json).

Each package exposes `run_benchmarks(quick: bool) -> list[dict]` rows with name, value, unit,
target and, where a baseline ran in the same process, baseline / baseline_name / ratio (speeds are
compared within one run because these machines are noisy). A suite that fails is reported as a
failed row; the others still run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

SUITES: dict[str, str] = {
    "capture": "dfocus_capture.bench",
    "sequencer": "dfocus_capture.bench_sequencer",
    "transport": "dfocus_bringup.bench_transport",
    "depth": "dfocus_depth.bench",
    "refocus": "dfocus_refocus.bench",
    "ui": "dfocus_refocus.ui.bench",
}


def run_suite(module_name: str, quick: bool) -> list[dict[str, Any]]:
    try:
        module = importlib.import_module(module_name)
        return list(module.run_benchmarks(quick))
    except Exception as exc:  # noqa: BLE001 - one broken suite must not hide the others
        traceback.print_exc()
        return [{"name": f"{module_name} FAILED", "value": "", "unit": "", "target": "", "error": repr(exc)}]


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def to_markdown(results: dict[str, list[dict[str, Any]]], quick: bool) -> str:
    lines = [
        "# dfocus benchmark results",
        "",
        f"Written by `dfocus bench{' --quick' if quick else ''}` on {time.strftime('%Y-%m-%d %H:%M')} "
        f"({machine()}). Ratios compare against the baseline measured in the same run.",
        "",
    ]
    for suite, rows in results.items():
        measured = rows[0].get("measured", "") if rows else ""
        lines += [f"## {suite}" + (f" (measured {measured})" if measured else ""), "",
                  "| benchmark | value | unit | target | baseline | ratio |", "|---" * 6 + "|"]
        for r in rows:
            base = r.get("baseline", "")
            if r.get("baseline_name"):
                base = f"{base} ({r['baseline_name']})"
            lines.append(
                f"| {r['name']} | {r.get('value', '')} | {r.get('unit', '')} | {r.get('target', '')} | {base} | "
                f"{r.get('ratio', '')} |"
            )
        lines.append("")
    return "\n".join(lines)


def bench_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dfocus bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--only", nargs="+", choices=sorted(SUITES), help="run only these suites")
    parser.add_argument("--out", default="bench/results.md", help="markdown output (a .json is written beside)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    # --only re-runs some suites and keeps the others' last results (each suite says when it ran).
    last = out.with_suffix(".json")
    previous = json.loads(last.read_text()) if args.only and last.exists() else {}
    results: dict[str, list[dict[str, Any]]] = {}
    for suite, module_name in SUITES.items():
        if args.only and suite not in args.only:
            if suite in previous:
                results[suite] = previous[suite]
            continue
        sys.stderr.write(f"[bench] {suite} ...\n")
        measured = time.strftime("%Y-%m-%d %H:%M")
        results[suite] = [{**row, "measured": measured} for row in run_suite(module_name, args.quick)]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_markdown(results, args.quick))
    out.with_suffix(".json").write_text(json.dumps(results, indent=2, default=str))
    sys.stdout.write(out.read_text())
    failed = [r["name"] for suite in results if not args.only or suite in args.only
              for r in results[suite] if "error" in r]
    return 1 if failed else 0
