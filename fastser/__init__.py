"""fastser: speech emotion recognition on fused C++/CUDA PyTorch custom operators.

Importing fastser loads the compiled extension, which registers the ops under
``torch.ops.fastser`` (without it, the same ops run their reference versions: see
:mod:`fastser.ops._library`); the public functions live in :mod:`fastser.ops`.
"""

from fastser import ops  # registers torch.ops.fastser.*
from fastser._config import build_config, show_config
from fastser.version import __version__

__all__ = ["Recognizer", "__version__", "build_config", "ops", "show_config"]


def __getattr__(name: str):
    # Recognizer pulls in the audio, data and method stack: imported on first use only.
    if name == "Recognizer":
        from fastser.inference.recognizer import Recognizer

        return Recognizer
    raise AttributeError(f"module 'fastser' has no attribute {name!r}")
