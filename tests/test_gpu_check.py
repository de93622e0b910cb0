"""scripts/gpu_check.sh without a GPU: the dry run, and every step's command, order, failure
handling and report with stand-ins for nvidia-smi, Python and compute-sanitizer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
STEPS = ["gpu", "versions", "build", "extension", "cuda-tests", "memcheck", "racecheck",
         "bench-fractal_attention", "bench-head_k_pooling_loss", "bench-cross_attention",
         "bench-mstr"]


def run_script(out: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), str(out)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env})


def test_dry_run_without_a_gpu_says_so_and_writes_the_report(tmp_path):
    proc = run_script(tmp_path / "out", NVIDIA_SMI=str(tmp_path / "no-nvidia-smi"))
    assert proc.returncode == 2, proc.stderr
    assert "no NVIDIA GPU found" in proc.stdout
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["status"] == "no NVIDIA GPU found" and report["gpu"] is None
    assert [s["name"] for s in report["steps"]] == ["gpu"]
    assert "no NVIDIA GPU found" in (tmp_path / "out" / "report.md").read_text()


def test_usage_error():
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 64 and "usage:" in proc.stderr


@pytest.fixture
def stand_ins(tmp_path):
    """A fake GPU (compute capability 9.0), a Python that logs its calls (the report writer
    runs for real) and a compute-sanitizer that logs its calls and reports no error."""
    log = tmp_path / "calls.log"
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'Fake H200, 9.0, 570.00, 143771 MiB'\n")
    python = tmp_path / "python"
    python.write_text(f"""#!/bin/bash
case "$*" in *gpu_check_report.py*) exec {sys.executable} "$@";; esac
echo "python ${{TORCH_CUDA_ARCH_LIST:-}} ${{MAX_JOBS:-}} ${{PYTORCH_NO_CUDA_MEMORY_CACHING:-}} $*" >> {log}
case "$*" in *"${{FAIL_ON:-no such argument}}"*) echo "failing on purpose"; exit 3;; esac
exit 0
""")
    sanitizer = tmp_path / "compute-sanitizer"
    sanitizer.write_text(f"""#!/bin/bash
echo "sanitizer $*" >> {log}
while [ "$1" != "$PYTHON" ]; do shift; done  # the sanitizer's own options
"$@"
echo "========= ERROR SUMMARY: 0 errors"
""")
    for path in (smi, python, sanitizer):
        path.chmod(0o755)
    return {"NVIDIA_SMI": str(smi), "PYTHON": str(python), "COMPUTE_SANITIZER": str(sanitizer)}, log


def test_every_step_runs_in_order_with_its_command(tmp_path, stand_ins):
    env, log = stand_ins
    proc = run_script(tmp_path / "out", **env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["status"] == "passed" and report["gpu"].startswith("Fake H200")
    assert [s["name"] for s in report["steps"]] == STEPS
    assert all(s["status"] == "passed" for s in report["steps"])
    calls = log.read_text().splitlines()
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    build = next(c for c in calls if "setup.py build_ext --inplace" in c)
    assert build.startswith(f"python 9.0 {nproc} ")  # this GPU's architecture only, every core
    assert any(c.endswith("-m pytest -m cuda -q -rs -p no:cacheprovider "
                          "--continue-on-collection-errors --junitxml="
                          f"{tmp_path / 'out' / 'cuda-tests.xml'} tests") for c in calls)
    for tool in ("memcheck", "racecheck"):
        assert any(c.startswith(f"sanitizer --tool {tool} --kernel-name kns=fastser "
                                "--error-exitcode 99") and "-m sanitize" in c for c in calls)
    sanitized = [c for c in calls if c.startswith("python") and "-m sanitize" in c]
    assert len(sanitized) == 2 and all(" 1 -m pytest" in c for c in sanitized)  # no caching
    for suite, dtype in (("fractal_attention", "float32"), ("head_k_pooling_loss", "float32"),
                         ("cross_attention", "float32"), ("mstr", "bfloat16")):
        assert any(f"-m fastser bench --device cuda --suite {suite} --dtype {dtype}" in c
                   for c in calls)
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "status: **passed**" in markdown and "ERROR SUMMARY: 0 errors" in markdown


def test_a_failed_step_is_reported_and_the_next_ones_still_run(tmp_path, stand_ins):
    env, log = stand_ins
    proc = run_script(tmp_path / "out", FAIL_ON="setup.py", **env)
    assert proc.returncode == 1
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    status = {s["name"]: s["status"] for s in report["steps"]}
    assert status["build"] == "failed" and status["bench-mstr"] == "passed"
    assert report["status"] == "failed"
    build = next(s for s in report["steps"] if s["name"] == "build")
    assert build["exit_code"] == 3 and "failing on purpose" in build["tail"]
    assert "## build: the end of logs/build.log" in (tmp_path / "out" / "report.md").read_text()


def test_the_time_budget_skips_what_does_not_fit(tmp_path, stand_ins):
    env, _ = stand_ins
    proc = run_script(tmp_path / "out", GPU_CHECK_BUDGET_S="5", **env)
    assert proc.returncode == 1
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert {s["status"] for s in report["steps"][1:]} == {"skipped"}
    assert all(s["note"] == "time budget spent" for s in report["steps"][1:])


def test_report_counts_tests_and_fails_when_every_cuda_test_skipped(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import gpu_check_report
    finally:
        sys.path.pop(0)
    (tmp_path / "logs").mkdir()
    (tmp_path / "gpu.txt").write_text("Fake, 9.0, 1, 1 MiB\n")
    (tmp_path / "steps.tsv").write_text("gpu\tpassed\t0\t0\tFake\ncuda-tests\tpassed\t0\t3\t\n")
    (tmp_path / "cuda-tests.xml").write_text(
        '<testsuites><testsuite tests="4" failures="0" errors="0" skipped="4"/></testsuites>')
    report = gpu_check_report.build(tmp_path, 450)
    tests = report["steps"][1]
    assert tests["tests"] == {"tests": 4, "failures": 0, "errors": 0, "skipped": 4}
    assert tests["status"] == "failed" and tests["note"] == "every CUDA test skipped"
    assert report["status"] == "failed"
