"""Export of trained models: TorchScript files that run in a process that only loads
fastser's shared library (or imports fastser, the only way with the reference backend, which
has no library), and ``torch.export`` programs.

The exported module is the recipe's inference module: it maps the model inputs of a batch
(``Recipe.export_inputs``) to utterance class probabilities (B, C). The label names and input
description travel with the file (TorchScript extra file ``fastser.json``; a JSON file beside
a ``torch.export`` program, :func:`sidecar_path`). Files are serialised in memory and written
atomically (:mod:`fastser.outputs`): a full disk is a StorageError, never a truncated file.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch

from fastser.inference.checkpoint import TrainedModel
from fastser.ops import _library
from fastser.outputs import write_bytes, write_json

METADATA = "fastser.json"
FORMATS = ("torchscript", "export")


def sidecar_path(path: str | Path) -> Path:
    """The metadata JSON beside a ``torch.export`` program."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def output_paths(path: str | Path, format: str) -> list[Path]:
    """The files an export of ``format`` writes at ``path``."""
    return [Path(path)] + ([sidecar_path(path)] if format == "export" else [])


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
    module = trained.recipe.export_module(trained.model).eval()
    device = next(trained.model.parameters()).device
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v
             for k, v in trained.recipe.example_batch().items()}
    return module, trained.recipe.export_inputs(batch)


def export_torchscript(trained: TrainedModel, path: str | Path) -> Path:
    """Script the inference module, save it with its metadata, reload it and check that it
    gives the eager outputs on an example batch."""
    path = Path(path)
    module, inputs = _module_and_inputs(trained)
    scripted = torch.jit.script(module)
    buffer = io.BytesIO()
    metadata = json.dumps(_metadata(trained, inputs))
    torch.jit.save(scripted, buffer, _extra_files={METADATA: metadata})
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
    module = torch.jit.load(str(path), _extra_files=extra)
    return module, json.loads(extra[METADATA]) if extra[METADATA] else {}
