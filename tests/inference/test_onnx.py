"""ONNX export: the fused ops (MSTR's fractal attention, CAN's cross attention) replaced by
their reference decompositions, standard ONNX operators only, onnxruntime equal to the fused
eager model at several input lengths, and the JSON bundle beside the file. Skipped without
the onnx extra (onnx, onnxscript, onnxruntime)."""

import importlib.util
import json

import pytest
import torch

from fastser.cli import main
from fastser.inference import load_trained
from fastser.inference.export import check_onnx, export_onnx, reference_ops
from fastser.inference.checkpoint import TrainedModel
from fastser.nn import CrossAttention, FractalAttention
from random_models import random_trained

MISSING = [name for name in ("onnx", "onnxscript", "onnxruntime")
           if importlib.util.find_spec(name) is None]
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"the onnx extra is not installed "
                                                      f"(missing {', '.join(MISSING)})")


def test_reference_ops_switches_every_fused_op_and_leaves_the_model_alone():
    _, model = random_trained("can")
    copy = reference_ops(model)
    assert model.cross.implementation == "fused"
    assert all(m.implementation == "reference" for m in copy.modules()
               if isinstance(m, (CrossAttention, FractalAttention)))


def test_mstr_exports_to_standard_onnx_that_onnxruntime_runs_like_the_fused_model(
        checkpoints, tmp_path, capsys):
    import onnx
    import onnxruntime

    path = tmp_path / "mstr.onnx"
    assert main(["export", "--checkpoint", str(checkpoints("mstr")), "--out", str(path),
                 "--format", "onnx"]) == 0
    assert {node.domain for node in onnx.load(str(path)).graph.node} <= {"", "ai.onnx"}
    bundle = json.loads(path.with_name("mstr.onnx.json").read_text())
    assert bundle["labels"] == ["neutral", "happy", "sad", "angry"]
    assert bundle["sample_rate"] == 16000 and bundle["settings"]["hop_ms"] == 20.0
    assert [i["name"] for i in bundle["inputs"]] == ["features", "lengths"]
    trained = load_trained(checkpoints("mstr"))
    check_onnx(trained, path, seconds=[(0.3, 8.0), (2.2, 2.2, 2.2, 5.1)])  # other lengths
    # a run by hand, outside fastser's helpers: a batch of one
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch = trained.recipe.example_batch((4.0,))
    with torch.no_grad():
        expected = trained.recipe.export_module(trained.model)(batch["features"],
                                                               batch["lengths"])
    got = session.run(None, {"features": batch["features"].numpy(),
                             "lengths": batch["lengths"].numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(got), expected, rtol=1e-4, atol=1e-5)


def test_can_with_its_fused_cross_attention_exports_to_onnx(tmp_path):
    recipe, model = random_trained("can")
    path = export_onnx(TrainedModel(recipe, model, {}), tmp_path / "can.onnx")
    bundle = json.loads(path.with_name("can.onnx.json").read_text())
    assert bundle["learnt"]["vocabulary"] == ["yes", "no", "maybe"]
    assert [i["name"] for i in bundle["inputs"]] == ["token_ids", "frames", "frame_lengths",
                                                    "lengths"]
