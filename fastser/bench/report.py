"""``fastser bench``: run suites, print one table per suite, optionally write JSON."""

from __future__ import annotations

import platform
import sys
from dataclasses import asdict
from datetime import date
from typing import Any, TextIO

import torch

from fastser import outputs
from fastser.bench.cases import BenchCase, load_suite, suites
from fastser.bench.measure import Measurement, measure


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def run_case(case: BenchCase, **timing: Any) -> list[Measurement]:
    return [measure(case, impl, **timing) for impl in case.impls]


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.3f}"


def _ratio(baseline: float | None, fused: float | None) -> str:
    if baseline is None or fused is None or fused <= 0:
        return "-"
    return f"{baseline / fused:.2f}x"


def format_table(case_results: list[tuple[BenchCase, list[Measurement]]]) -> str:
    """Rows per implementation; speed-ups are baseline time / fused time, the memory column is
    fused peak / baseline peak (below 1: fused uses less)."""
    header = ("size", "impl", "fwd ms", "fwd+bwd ms", "peak MiB", "fwd speed-up",
              "fwd+bwd speed-up", "fused/impl mem")
    rows: list[tuple[str, ...]] = []
    for case, results in case_results:
        fused = results[0]
        for i, m in enumerate(results):
            first = i == 0
            rows.append((
                case.size if first else "",
                m.impl,
                _ms(m.forward_s),
                _ms(m.forward_backward_s),
                f"{m.peak_bytes / 2**20:.1f}",
                "" if first else _ratio(m.forward_s, fused.forward_s),
                "" if first else _ratio(m.forward_backward_s, fused.forward_backward_s),
                "" if first or not m.peak_bytes else f"{fused.peak_bytes / m.peak_bytes:.2f}",
            ))
    widths = [max(len(r[c]) for r in rows + [header]) for c in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def run(suites: list[str], device: torch.device, dtype: torch.dtype, *, quick: bool,
        out: TextIO = sys.stdout, **timing: Any) -> dict[str, Any]:
    """Run ``suites`` and print their tables; returns everything as a JSON-ready dict."""
    report: dict[str, Any] = {
        "date": date.today().isoformat(),
        "device": device_description(device),
        "dtype": str(dtype).replace("torch.", ""),
        "torch": torch.__version__,
        "suites": {},
    }
    for name in suites:
        cases = load_suite(name, device, dtype, quick)
        results = [(case, run_case(case, **timing)) for case in cases]
        print(f"\n{name}  ({report['device']}, {report['dtype']})", file=out)
        for note in dict.fromkeys(case.note for case, _ in results if case.note):
            print(note, file=out)
        print(format_table(results), file=out)
        out.flush()
        report["suites"][name] = [
            {"size": case.size, "meta": case.meta, "results": [asdict(m) for m in ms]}
            for case, ms in results
        ]
    return report


def available_suites() -> list[str]:
    return sorted(suites())


def write_json(report: dict[str, Any], path: str) -> None:
    outputs.write_json(path, report)
