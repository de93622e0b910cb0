"""Export of trained models: TorchScript files that run in a process that only loads
fastser's shared library (or imports fastser, the only way with the reference backend, which
has no library), ``torch.export`` programs, and ONNX files that need neither fastser nor
PyTorch (standard ONNX operators only).

The exported module is the recipe's inference module: it maps the model inputs of a batch
(``Recipe.export_inputs``) to utterance class probabilities (B, C) (a model's affect
predictions are not exported: ``fastser predict`` and Recognizer give them). The label names
and input description travel with the file (TorchScript extra file ``fastser.json``; a JSON
file beside a ``torch.export`` program or an ONNX file, :func:`sidecar_path`), which for ONNX
also holds what a deployment needs to compute the inputs: the sample rate, the method's
settings and what it learnt from the training set, e.g. feature statistics or a vocabulary.
Files are serialised in memory (or a temporary folder) and written atomically
(:mod:`fastser.outputs`): a full disk is a StorageError, never a truncated file.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import inspect
import io
import json
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from fastser.audio.io import SAMPLE_RATE
from fastser.errors import UserError
from fastser.inference.checkpoint import TrainedModel
from fastser.nn import CrossAttention, FractalAttention
from fastser.ops import _library
from fastser.outputs import write_bytes, write_json

METADATA = "fastser.json"
FORMATS = ("torchscript", "export", "onnx")
#: The modules that run a fused op; each has the op's reference decomposition as
#: ``implementation="reference"``.
FUSED_OP_MODULES = (CrossAttention, FractalAttention)
#: Utterance lengths (seconds) of the batches an ONNX file is checked on.
ONNX_CHECK_SECONDS = ((1.0, 3.7), (6.2,), (2.5, 0.9, 4.4))
ONNX_TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}


def sidecar_path(path: str | Path) -> Path:
    """The metadata JSON beside a ``torch.export`` program or an ONNX file."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def output_paths(path: str | Path, format: str) -> list[Path]:
    """The files an export of ``format`` writes at ``path``."""
    return [Path(path)] + ([sidecar_path(path)] if format in ("export", "onnx") else [])


def _metadata(trained: TrainedModel, inputs: tuple[torch.Tensor, ...]) -> dict[str, Any]:
    return {"model": trained.recipe.name, "labels": trained.recipe.label_names,
            "inputs": [{"shape": list(x.shape), "dtype": str(x.dtype).replace("torch.", "")}
                       for x in inputs],
            "output": "utterance class probabilities (B, C)",
            "load": _load_hint()}


def _load_hint() -> str:
    """How a process registers the ops an exported file calls (the schemas are the same with
    either backend, so a file exported with one runs with the other)."""
    if _library.BACKEND == "reference":
        return "import fastser (its ops run their reference versions here), then torch.jit.load"
    return (f"torch.ops.load_library(<fastser/{Path(_library.library_path()).name}>) or import "
            "fastser, then torch.jit.load(path)")


def _module_and_inputs(trained: TrainedModel):
    recipe = trained.recipe
    if not recipe.predicts_emotion:
        raise UserError(f"{recipe.name}: the model predicts affect only "
                        f"({', '.join(recipe.targets)}); exported files give class "
                        "probabilities, so it has nothing to export (fastser predict and "
                        "Recognizer give its affect values)")
    module = recipe.export_module(trained.model).eval()
    return module, _example_inputs(trained)


def _example_inputs(trained: TrainedModel,
                    seconds: Sequence[float] | None = None) -> tuple[torch.Tensor, ...]:
    """The export inputs of the recipe's example batch (of utterances of ``seconds``)."""
    recipe = trained.recipe
    example = recipe.example_batch() if seconds is None else recipe.example_batch(seconds)
    device = next(trained.model.parameters()).device
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in example.items()}
    return recipe.export_inputs(batch)


@contextlib.contextmanager
def quiet_torchscript() -> Iterator[None]:
    """torch's FutureWarnings that ``torch.jit.script/save/load`` are deprecated silenced: the
    TorchScript format is fastser's choice (README: the export formats), and the notice,
    repeated at every call, is nothing a user of the command can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"`torch\.jit\.\w+` is deprecated", FutureWarning)
        yield


def export_torchscript(trained: TrainedModel, path: str | Path) -> Path:
    """Script the inference module, save it with its metadata, reload it and check that it
    gives the eager outputs on an example batch."""
    path = Path(path)
    module, inputs = _module_and_inputs(trained)
    buffer = io.BytesIO()
    metadata = json.dumps(_metadata(trained, inputs))
    with quiet_torchscript():
        torch.jit.save(torch.jit.script(module), buffer, _extra_files={METADATA: metadata})
        write_bytes(path, buffer.getvalue())
        with torch.no_grad():
            torch.testing.assert_close(torch.jit.load(str(path))(*inputs), module(*inputs))
    return path


def export_program(trained: TrainedModel, path: str | Path) -> Path:
    """``torch.export`` the inference module (every input dimension dynamic where the model
    allows it) and save the program, with ``<path>.json`` holding the metadata.

    torch.export unrolls LSTMs over time, so models with LSTMs over variable-length inputs
    keep those lengths of the example batch (CAN: words per utterance and frames per word;
    pad inputs to them, or use the fully dynamic TorchScript file)."""
    path = Path(path)
    module, inputs = _module_and_inputs(trained)
    dims = tuple({d: torch.export.Dim.AUTO for d in range(x.dim())} for x in inputs)
    program = torch.export.export(module, inputs, dynamic_shapes=dims)
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    write_bytes(path, buffer.getvalue())
    write_json(sidecar_path(path), _metadata(trained, inputs))
    return path


def load_torchscript(path: str | Path) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """A TorchScript file exported by fastser and its metadata (fastser's ops are already
    registered in this process, since this module imports fastser)."""
    extra = {METADATA: ""}
    with quiet_torchscript():
        module = torch.jit.load(str(path), _extra_files=extra)
    return module, json.loads(extra[METADATA]) if extra[METADATA] else {}


def reference_ops(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with every fused op replaced by its reference decomposition
    (standard PyTorch operators)."""
    module = copy.deepcopy(module)
    for part in module.modules():
        if isinstance(part, FUSED_OP_MODULES):
            part.implementation = "reference"
    return module


def export_onnx(trained: TrainedModel, path: str | Path) -> Path:
    """Export the inference module with its fused ops replaced by their reference
    decompositions (:func:`reference_ops`) to ONNX (``torch.onnx.export``, every input
    dimension dynamic where the model allows it), check that it holds standard ONNX operators
    only and that onnxruntime gives the fused eager model's outputs on batches of several
    lengths (:data:`ONNX_CHECK_SECONDS`), and write ``<path>.json`` beside it."""
    missing = [name for name in ("onnx", "onnxscript", "onnxruntime")
               if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(f"ONNX export needs {', '.join(missing)}: pip install 'fastser[onnx]'")
    import onnx

    path = Path(path)
    module, inputs = _module_and_inputs(trained)
    names = list(inspect.signature(module.forward).parameters)[:len(inputs)]
    dims = tuple({d: torch.export.Dim.AUTO for d in range(x.dim())} for x in inputs)
    registry = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registry.level
    registry.setLevel(logging.ERROR)  # not its notes on torchvision's ops, which we do not use
    try:
        program = torch.onnx.export(reference_ops(module), inputs, dynamo=True,
                                    dynamic_shapes=dims, input_names=names,
                                    output_names=["probs"], verbose=False)
    finally:
        registry.setLevel(level)
    with tempfile.TemporaryDirectory() as folder:
        written = Path(folder) / "model.onnx"
        program.save(str(written))
        foreign = sorted({f"{node.domain}::{node.op_type}"
                          for node in onnx.load(str(written)).graph.node
                          if node.domain not in ("", "ai.onnx")})
        if foreign:
            raise AssertionError(f"the ONNX export of {trained.recipe.name} holds non-standard "
                                 f"operators {foreign}")
        check_onnx(trained, written)
        onnx_inputs = _onnx_inputs(written)
        write_bytes(path, written.read_bytes())
    bundle = {**_metadata(trained, inputs), "format": "onnx", "sample_rate": SAMPLE_RATE,
              "inputs": [{"name": name, "shape": list(shape), "dtype": dtype}
                         for name, shape, dtype in onnx_inputs],
              "settings": trained.recipe.settings.to_dict(),
              "learnt": _plain(trained.recipe.extra_state()),
              "load": "onnxruntime.InferenceSession(path); no fastser or PyTorch needed"}
    write_json(sidecar_path(path), bundle)
    return path


def check_onnx(trained: TrainedModel, path: str | Path,
               seconds: Sequence[Sequence[float]] = ONNX_CHECK_SECONDS) -> None:
    """AssertionError unless onnxruntime runs the ONNX file at ``path`` to the fused eager
    model's outputs on example batches of the given utterance lengths (seconds)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    module = trained.recipe.export_module(trained.model).eval()
    for lengths in seconds:
        inputs = _example_inputs(trained, lengths)
        with torch.no_grad():
            expected = module(*inputs).float().cpu()
        feed = {arg.name: x.cpu().numpy() for arg, x in zip(session.get_inputs(), inputs)}
        got = torch.from_numpy(session.run(None, feed)[0])
        torch.testing.assert_close(got, expected, **ONNX_TOLERANCE,
                                   msg=lambda m: f"ONNX file {path}, utterances of {lengths} s: "
                                                 f"onnxruntime differs from the model: {m}")


def _onnx_inputs(path: Path) -> list[tuple[str, list[Any], str]]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [(arg.name, arg.shape, arg.type) for arg in session.get_inputs()]


def _plain(value: Any) -> Any:
    """``value`` with tensors as (nested) lists, for JSON."""
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
