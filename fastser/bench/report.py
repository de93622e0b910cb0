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


def bandwidth(case: BenchCase, results: list[Measurement]) -> dict[str, dict[str, float]]:
    """GB/s of each implementation at the case's least traffic (its ``bytes`` meta: the bytes
    the op must move, forward and forward+backward), {} when the case names none."""
    least = case.meta.get("bytes")
    if not least:
        return {}
    rates: dict[str, dict[str, float]] = {}
    for m in results:
        times = {"forward": m.forward_s, "forward_backward": m.forward_backward_s}
        rates[m.impl] = {pass_: least[pass_] / t / 1e9 for pass_, t in times.items()
                         if t and pass_ in least}
    return rates


def format_bandwidth(case: BenchCase, rates: dict[str, dict[str, float]]) -> str:
    """One line: the fused op's GB/s and the share of the traffic bound's (the ``traffic``
    implementation) it reaches."""
    fused = rates.get(case.fused_name, {})
    parts = [f"{pass_.replace('_', '+')} {gbps:.1f} GB/s" for pass_, gbps in fused.items()]
    bound = rates.get("traffic", {}).get("forward")
    if bound and "forward" in fused:
        parts.append(f"forward at {100 * fused['forward'] / bound:.0f}% of the traffic bound "
                     f"({bound:.1f} GB/s)")
    return f"{case.size}: {case.fused_name} at its least traffic: " + ", ".join(parts)


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
        rates = [bandwidth(case, ms) for case, ms in results]
        for (case, _), rate in zip(results, rates):
            if rate:
                print(format_bandwidth(case, rate), file=out)
        out.flush()
        report["suites"][name] = [
            {"size": case.size, "meta": case.meta, "results": [asdict(m) for m in ms],
             **({"gbps": rate} if rate else {})}
            for (case, ms), rate in zip(results, rates)
        ]
    return report


def available_suites() -> list[str]:
    return sorted(suites())


def write_json(report: dict[str, Any], path: str) -> None:
    outputs.write_json(path, report)
