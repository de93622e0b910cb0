#!/usr/bin/env bash
# fastser's GPU verification in one command, for a fresh machine with an NVIDIA GPU:
#
#   scripts/gpu_check.sh OUT_DIR
#
# Steps, each timed and logged under OUT_DIR/logs/, each run whatever the previous ones gave:
#   versions     python, torch, CUDA, nvcc, driver and GPU
#   build        the extension for this GPU's architecture only (TORCH_CUDA_ARCH_LIST from
#                nvidia-smi's compute capability, MAX_JOBS = the cores), in place
#   extension    the built extension loads and serves every op with CUDA kernels
#   cuda-tests   every CUDA test (pytest -m cuda)
#   memcheck     compute-sanitizer memcheck over tests/ops/test_sanitize.py (pytest -m
#   racecheck    sanitize: every kernel forward and backward, ragged lengths, each dtype),
#                fastser's kernels only
#   bench-*      fastser bench --device cuda for fractal_attention (with its bandwidth
#                figure), head_k_pooling_loss, cross_attention (float32) and the MSTR
#                training step (bfloat16), at the suites' CUDA sizes
# then OUT_DIR/report.md and OUT_DIR/report.json (steps, status, seconds, log tails, versions,
# GPU).  The whole run keeps within GPU_CHECK_BUDGET_S seconds (default 450): each step's time
# limit is its own cap or what is left, and a step with no time left is skipped.
#
# Environment: PYTHON (default: python3), NVIDIA_SMI (default: nvidia-smi), COMPUTE_SANITIZER
# (default: found under CUDA_HOME, on PATH or in /usr/local/cuda*), GPU_CHECK_BUDGET_S.
# Exit status: 0 every step passed; 1 a step failed, timed out or was skipped; 2 no NVIDIA GPU
# found (nothing else run; the report says so); 64 usage error.
set -u

if [ $# -ne 1 ] || [ "${1#-}" != "$1" ]; then
  echo "usage: $0 OUT_DIR   (the folder for report.md, report.json and logs/)" >&2
  exit 64
fi
mkdir -p "$1/logs" || { echo "cannot create $1/logs" >&2; exit 64; }
OUT=$(cd "$1" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 64
PYTHON=${PYTHON:-python3}
NVIDIA_SMI=${NVIDIA_SMI:-nvidia-smi}
BUDGET_S=${GPU_CHECK_BUDGET_S:-450}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
STEPS="$OUT/steps.tsv"
START=$(date +%s)
: > "$STEPS"

# record NAME STATUS EXIT_CODE SECONDS NOTE
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >> "$STEPS"; }

report() {
  "$PYTHON" "$ROOT/scripts/gpu_check_report.py" "$OUT" "$BUDGET_S" \
    || echo "gpu_check: the report could not be written (see the lines above)" >&2
}

# step NAME CAP_S COMMAND...: runs COMMAND with a time limit of CAP_S or what is left of the
# budget, its output in logs/NAME.log; records passed / failed / timeout / skipped.
step() {
  local name=$1 cap=$2 log="$OUT/logs/$1.log"
  shift 2
  local left=$((BUDGET_S - ($(date +%s) - START)))
  local limit=$((cap < left ? cap : left))
  if [ "$limit" -lt 10 ]; then
    echo "== $name: skipped (time budget of ${BUDGET_S} s spent)"
    record "$name" skipped "" 0 "time budget spent"
    return
  fi
  echo "== $name (at most ${limit} s)"
  local began=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" > "$log" 2>&1
  local code=$?
  local seconds=$(($(date +%s) - began))
  local status=passed note=""
  if [ $code -eq 124 ] || [ $code -eq 137 ]; then
    status=timeout note="stopped after ${limit} s"
  elif [ $code -ne 0 ]; then
    status=failed
  fi
  echo "   $status (exit $code, ${seconds} s); log: logs/$name.log"
  record "$name" "$status" "$code" "$seconds" "$note"
}

skip() {  # skip NAME REASON
  echo "== $1: skipped ($2)"
  record "$1" skipped "" 0 "$2"
}

find_sanitizer() {
  local candidate
  for candidate in "${COMPUTE_SANITIZER:-}" "${CUDA_HOME:-/nonexistent}/bin/compute-sanitizer" \
      "${CUDA_HOME:-/nonexistent}/compute-sanitizer/compute-sanitizer" \
      "$(command -v compute-sanitizer 2>/dev/null)" /usr/local/cuda/bin/compute-sanitizer \
      $(ls -d /usr/local/cuda-*/bin/compute-sanitizer 2>/dev/null | sort -V -r); do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

# --- the GPU ----------------------------------------------------------------------------------
gpu=""
if command -v "$NVIDIA_SMI" > /dev/null 2>&1; then
  gpu=$("$NVIDIA_SMI" --query-gpu=name,compute_cap,driver_version,memory.total \
        --format=csv,noheader 2>"$OUT/logs/nvidia-smi.log" | head -n 1)
fi
if [ -z "$gpu" ]; then
  echo "gpu_check: no NVIDIA GPU found ($NVIDIA_SMI is missing or lists no GPU); nothing run."
  printf 'none\n' > "$OUT/gpu.txt"
  record gpu skipped "" 0 "no NVIDIA GPU found"
  report
  exit 2
fi
printf '%s\n' "$gpu" > "$OUT/gpu.txt"
capability=$(printf '%s' "$gpu" | cut -d, -f2 | tr -d ' ')
case "$capability" in
  [0-9]*.[0-9]*) ;;
  *) capability=$("$PYTHON" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())" \
                  2>/dev/null) ;;
esac
echo "gpu_check: $gpu (architecture $capability); budget ${BUDGET_S} s; output in $OUT"
record gpu passed 0 0 "$gpu"

# --- versions, build, tests, sanitizers, benchmarks ---------------------------------------------
step versions 60 "$PYTHON" - "$OUT/versions.json" <<'PY'
import json, os, platform, subprocess, sys
info = {"python": platform.python_version(), "cores": os.cpu_count()}
try:
    import torch
    info.update(torch=torch.__version__, torch_cuda=torch.version.cuda,
                cuda_available=torch.cuda.is_available())
    if torch.cuda.is_available():
        info.update(gpu=torch.cuda.get_device_name(0),
                    capability="%d.%d" % torch.cuda.get_device_capability(0))
except Exception as error:  # recorded, and the step fails
    info["torch_error"] = repr(error)
try:
    from torch.utils.cpp_extension import CUDA_HOME
    nvcc = os.path.join(CUDA_HOME or "/usr/local/cuda", "bin", "nvcc")
    info["nvcc"] = subprocess.run([nvcc, "--version"], capture_output=True,
                                  text=True).stdout.strip().splitlines()[-1]
except Exception as error:
    info["nvcc_error"] = repr(error)
json.dump(info, open(sys.argv[1], "w"), indent=2)
print(json.dumps(info, indent=2))
sys.exit(1 if "torch_error" in info or not info.get("cuda_available") else 0)
PY

if [ -n "$capability" ]; then
  step build 240 env TORCH_CUDA_ARCH_LIST="$capability" MAX_JOBS="$(nproc)" FASTSER_CUDA=1 \
    FASTSER_BUILD_EXTENSION=1 "$PYTHON" setup.py build_ext --inplace
else
  skip build "the GPU's compute capability is unknown (nvidia-smi and torch gave none)"
fi

step extension 60 "$PYTHON" -c "
import fastser
cfg = fastser.build_config()
fastser.show_config()
assert cfg['backend'] == 'compiled', cfg['extension_error']
assert 'CUDA' in cfg['backends'] and all('CUDA' in k for k in cfg['ops'].values()), cfg['ops']
assert cfg['gpus'], 'torch sees no GPU'
"

# (a test module that cannot be imported here, e.g. for a missing optional package, is reported
# and fails the step, but does not stop the CUDA tests of the others)
step cuda-tests 150 "$PYTHON" -m pytest -m cuda -q -rs -p no:cacheprovider \
  --continue-on-collection-errors --junitxml="$OUT/cuda-tests.xml" tests

sanitizer=$(find_sanitizer)
for tool in memcheck racecheck; do
  if [ -n "$sanitizer" ]; then
    # no caching allocator: memcheck then sees each tensor's own bounds
    step "$tool" 90 env PYTORCH_NO_CUDA_MEMORY_CACHING=1 "$sanitizer" --tool "$tool" \
      --kernel-name kns=fastser --error-exitcode 99 --print-limit 20 \
      "$PYTHON" -m pytest -m sanitize -q -p no:cacheprovider tests/ops/test_sanitize.py
  else
    skip "$tool" "compute-sanitizer not found (set COMPUTE_SANITIZER or CUDA_HOME)"
  fi
done

for suite in fractal_attention:float32:120 head_k_pooling_loss:float32:45 \
             cross_attention:float32:90 mstr:bfloat16:90; do
  IFS=: read -r name dtype cap <<< "$suite"
  step "bench-$name" "$cap" "$PYTHON" -m fastser bench --device cuda --suite "$name" \
    --dtype "$dtype" --min-time 0.2 --json "$OUT/bench-$name.json"
done

report
awk -F '\t' '$2 != "passed" {bad = 1} END {exit bad}' "$STEPS" || exit 1
exit 0
