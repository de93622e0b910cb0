"""fastser.show_config() and `fastser info`."""

import io
import json
import subprocess
import sys

import torch

import fastser
from fastser.cli import main


def test_build_config_reports_versions_backends_and_threads():
    cfg = fastser.build_config()
    assert cfg["fastser"] == fastser.__version__
    assert cfg["torch"] == torch.__version__
    assert cfg["threads"] == torch.get_num_threads()
    forward_ops = {n.split("::")[1] for n in fastser.ops.registered_ops()
                   if not n.endswith("_backward")}
    assert set(cfg["ops"]) == set(cfg["op_backends"]) == forward_ops
    if cfg["backend"] == "compiled":
        assert cfg["backends"][0] == "CPU" and cfg["extension_error"] is None
        assert all(b.startswith("compiled (CPU") for b in cfg["op_backends"].values())
    else:
        assert cfg["backend"] == "reference" and cfg["backends"] == []
        assert cfg["extension_error"] and cfg["library"] is None
        assert all(b.startswith("reference") for b in cfg["op_backends"].values())
    if "CUDA" in cfg["backends"]:
        assert cfg["cuda_archs"], "a CUDA build must name its architectures"


def test_every_forward_op_has_a_cpu_kernel():
    for op, backends in fastser.build_config()["ops"].items():
        assert "CPU" in backends, f"{op} has no CPU kernel"


def test_show_config_prints_each_fact():
    buf = io.StringIO()
    fastser.show_config(file=buf)
    text = buf.getvalue()
    for needle in ("fastser", fastser.__version__, torch.__version__, "ops backend",
                   "compiled backends", "CPU threads"):
        assert needle in text
    rows = {line.split()[0]: line.split(None, 1)[1] for line in text.splitlines()
            if line.startswith("  ")}
    assert rows == fastser.build_config()["op_backends"]


def test_info_command_json(capsys):
    assert main(["info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(fastser.build_config()))


def test_python_m_fastser_info_runs():
    proc = subprocess.run([sys.executable, "-m", "fastser", "info"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "compiled backends" in proc.stdout
