"""Using a trained model: load it from its checkpoint, recognise and embed recordings
(:class:`Recognizer`; many at once from files, folders, manifests and wav.scp files:
:mod:`.inputs`, :mod:`.bulk`, :mod:`.writers`), stream audio through segment-level methods
(:class:`StreamingRecognizer`, :mod:`.live`), export portable files (:mod:`.export`).

This package depends on the method registry (:mod:`fastser.methods`) and the recipe interface,
never on the training engine."""

from fastser.inference.checkpoint import TrainedModel, load_trained
from fastser.inference.export import (export_onnx, export_program, export_torchscript,
                                      load_torchscript)
from fastser.inference.inputs import AudioInput, list_inputs
from fastser.inference.recognizer import Embedding, Recognition, Recognizer, SegmentScore
from fastser.inference.streaming import StreamingRecognizer

__all__ = ["AudioInput", "Embedding", "Recognition", "Recognizer", "SegmentScore",
           "StreamingRecognizer", "TrainedModel", "export_onnx", "export_program",
           "export_torchscript", "list_inputs", "load_torchscript", "load_trained"]
