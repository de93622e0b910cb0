"""Using a trained model: load it from its checkpoint, recognise recordings
(:class:`Recognizer`), stream audio through segment-level methods, export portable files.

This package depends on the method registry (:mod:`fastser.methods`) and the recipe interface,
never on the training engine."""

from fastser.inference.checkpoint import TrainedModel, load_trained
from fastser.inference.export import export_program, export_torchscript, load_torchscript
from fastser.inference.recognizer import Recognition, Recognizer, SegmentScore
from fastser.inference.streaming import StreamingRecognizer

__all__ = ["Recognition", "Recognizer", "SegmentScore", "StreamingRecognizer", "TrainedModel",
           "export_program", "export_torchscript", "load_torchscript", "load_trained"]
