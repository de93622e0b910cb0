"""Writes report.json and report.md for scripts/gpu_check.sh from what its steps left in the
output folder: steps.tsv (name, status, exit code, seconds, note per line), gpu.txt,
versions.json, logs/<step>.log, cuda-tests.xml (JUnit) and bench-<suite>.json.  Python's
standard library only, so that it reports even when torch is broken.

    python scripts/gpu_check_report.py OUT_DIR BUDGET_S
"""

from __future__ import annotations

import json
import re
import sys
import xml.etree.ElementTree as ElementTree
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

TAIL_LINES = 30


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    if not path.is_file():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def read_steps(out: Path) -> list[dict[str, Any]]:
    steps = []
    for line in (out / "steps.tsv").read_text().splitlines():
        name, status, code, seconds, note = (line.split("\t") + [""] * 5)[:5]
        steps.append({"name": name, "status": status,
                      "exit_code": int(code) if code.strip() else None,
                      "seconds": int(seconds or 0), "note": note,
                      "log": f"logs/{name}.log" if (out / "logs" / f"{name}.log").is_file()
                      else None})
    return steps


def test_counts(path: Path) -> dict[str, int] | None:
    """tests, failures, errors, skipped of a JUnit XML file."""
    if not path.is_file():
        return None
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError:
        return None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    return {key: sum(int(s.get(key, 0)) for s in suites)
            for key in ("tests", "failures", "errors", "skipped")}


def sanitizer_summary(log: Path) -> str | None:
    """compute-sanitizer's closing summary line ("ERROR SUMMARY: ..." / "RACECHECK SUMMARY")."""
    if not log.is_file():
        return None
    found = re.findall(r"(?:ERROR|RACECHECK) SUMMARY: .*", log.read_text(errors="replace"))
    return found[-1] if found else None


def bench_summary(path: Path) -> list[dict[str, Any]] | None:
    """Per case of a `fastser bench --json` file: size, fused vs baselines, and GB/s."""
    if not path.is_file():
        return None
    report = json.loads(path.read_text())
    cases = []
    for suite in report.get("suites", {}).values():
        for case in suite:
            results = {r["impl"]: r for r in case["results"]}
            fused = case["results"][0]
            row = {"size": case["size"], "fused_forward_ms": fused["forward_s"] * 1e3,
                   "fused_forward_backward_ms": (fused["forward_backward_s"] or 0) * 1e3,
                   "speedups": {}}
            for impl, r in results.items():
                if impl == fused["impl"]:
                    continue
                ratio = {"forward": r["forward_s"] / fused["forward_s"]}
                if r["forward_backward_s"] and fused["forward_backward_s"]:
                    ratio["forward_backward"] = r["forward_backward_s"] / fused["forward_backward_s"]
                row["speedups"][impl] = ratio
            if "gbps" in case:  # the fused op's GB/s, and the traffic bound's when measured
                row["gbps"] = case["gbps"].get(fused["impl"], {})
                bound = case["gbps"].get("traffic", {}).get("forward")
                if bound:
                    row["traffic_bound_gbps"] = bound
            cases.append(row)
    return cases


def build(out: Path, budget: int) -> dict[str, Any]:
    steps = read_steps(out)
    gpu = (out / "gpu.txt").read_text().strip() if (out / "gpu.txt").is_file() else "none"
    versions = json.loads((out / "versions.json").read_text()) \
        if (out / "versions.json").is_file() else {}
    for step in steps:
        log = out / "logs" / f"{step['name']}.log"
        step["tail"] = tail(log)
        if step["name"] == "cuda-tests":
            step["tests"] = test_counts(out / "cuda-tests.xml")
            counts = step["tests"]
            if counts and counts["tests"] and counts["skipped"] == counts["tests"]:
                step["status"], step["note"] = "failed", "every CUDA test skipped"
        if step["name"] in ("memcheck", "racecheck"):
            step["summary"] = sanitizer_summary(log)
        if step["name"].startswith("bench-"):
            step["bench"] = bench_summary(out / f"{step['name']}.json")
    no_gpu = gpu == "none"
    passed = not no_gpu and all(s["status"] == "passed" for s in steps)
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "gpu": None if no_gpu else gpu,
        "status": "no NVIDIA GPU found" if no_gpu else ("passed" if passed else "failed"),
        "budget_s": budget,
        "seconds": sum(s["seconds"] for s in steps),
        "versions": versions,
        "steps": steps,
    }


def markdown(report: dict[str, Any]) -> str:
    lines = ["# fastser GPU check", "",
             f"- date: {report['date']}",
             f"- GPU: {report['gpu'] or 'none (no NVIDIA GPU found: nothing was run)'}",
             f"- status: **{report['status']}**",
             f"- time: {report['seconds']} s of a {report['budget_s']} s budget"]
    versions = report["versions"]
    if versions:
        lines.append("- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    lines += ["", "| step | status | exit | seconds | note |", "|---|---|---|---|---|"]
    for s in report["steps"]:
        note = s["note"]
        if s.get("tests"):
            t = s["tests"]
            note = (f"{t['tests']} tests, {t['failures']} failed, {t['errors']} errors, "
                    f"{t['skipped']} skipped" + (f"; {note}" if note else ""))
        if s.get("summary"):
            note = s["summary"] + (f"; {note}" if note else "")
        code = "" if s["exit_code"] is None else s["exit_code"]
        lines.append(f"| {s['name']} | {s['status']} | {code} | {s['seconds']} | {note} |")
    bench = []
    for s in report["steps"]:
        for case in s.get("bench") or []:
            speedups = ", ".join(
                f"{impl} " + "/".join(f"{v:.2f}x" for v in ratio.values())
                for impl, ratio in case["speedups"].items())
            line = (f"- {s['name'][len('bench-'):]} {case['size']}: fused "
                    f"{case['fused_forward_ms']:.3f} ms forward, "
                    f"{case['fused_forward_backward_ms']:.3f} ms forward+backward; speed-up "
                    f"(forward/forward+backward) vs {speedups}")
            if case.get("gbps"):
                line += "; fused at least traffic " + ", ".join(
                    f"{k.replace('_', '+')} {v:.0f} GB/s" for k, v in case["gbps"].items())
            if case.get("traffic_bound_gbps"):
                line += f" (traffic bound {case['traffic_bound_gbps']:.0f} GB/s)"
            bench.append(line)
    if bench:
        lines += ["", "## Benchmarks", "", *bench]
    for s in report["steps"]:
        if s["status"] != "passed" and s["tail"]:
            lines += ["", f"## {s['name']}: the end of {s['log']}", "", "```", s["tail"], "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    out, budget = Path(argv[1]), int(argv[2])
    report = build(out, budget)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown(report))
    print(f"gpu_check: {report['status']}; wrote {out / 'report.md'} and {out / 'report.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
