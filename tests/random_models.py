"""Small randomly initialised models of each method, as (recipe, model) or saved as
checkpoints (no training: inference must give the same numbers whatever the weights), and
short generated recordings; for the inference tests and benchmarks."""

from __future__ import annotations

from pathlib import Path

import torch

from fastser.audio.io import save_audio
from fastser.checkpoint import save_checkpoint
from fastser.methods import make_recipe, recipe_class

LABELS = ["neutral", "happy", "sad", "angry"]
#: Small settings of each method (random weights; the SAP front end is the tiny random one;
#: no speaker_norm, so that segment-level models stream).
SMALL = {
    "glrf": {"speaker_norm": False, "channels": 16, "blocks": 2, "heads": 2, "dropout": 0.0},
    "stl": {"speaker_norm": False, "pool": (4, 4), "conv": ((5, 5, 8), (3, 3, 8)),
            "lstm_hidden": 16, "embed_dim": 8},
    "mtl": {"speaker_norm": False, "pool": (4, 4), "conv": ((5, 5, 8), (3, 3, 8)),
            "lstm_hidden": 16, "embed_dim": 8},
    "mmtl": {"speaker_norm": False, "pool": (4, 4), "conv": ((5, 5, 8), (3, 3, 8)),
             "lstm_hidden": 16, "embed_dim": 8},
    "mstr": {"speaker_norm": False, "embed_dim": 16, "num_heads": 2, "num_blocks": 1,
             "ffn_dim": 32, "dropout": 0.0},
    "transformer": {"speaker_norm": False, "embed_dim": 16, "num_heads": 2, "num_blocks": 1,
                    "ffn_dim": 32, "dropout": 0.0},
    "sap": {"ssl_config": "tiny", "heads": 2, "cache": False, "dropout": 0.0},
    "can": {"embed_dim": 8, "hidden": 8, "word_hidden": 8, "heads": 2, "dropout": 0.0,
            "vocabulary": ("yes", "no", "maybe")},
    "egemaps": {},
}


def random_trained(method: str, seed: int = 0, **settings):
    """(recipe, model in eval mode) of ``method`` with random weights; GLRF's input
    standardisation is drawn too, so its features are not left unscaled."""
    recipe = make_recipe(method, LABELS, **{**SMALL[method], **settings})
    torch.manual_seed(seed)
    model = recipe.build_model()
    if method == "glrf":
        model.feature_mean.uniform_(-20, 20)
        model.feature_std.uniform_(5, 30)
    if method == "egemaps":  # fitted by scikit-learn in training: drawn here
        with torch.no_grad():
            model.weight.normal_()
            model.bias.normal_()
    return recipe, model.eval()


def demo_recipe(method: str, corpus, tmp_path: Path):
    """The method's recipe with its demo settings for ``corpus``'s labels (SAP: the tiny
    random WavLM, its feature cache in ``tmp_path``)."""
    preset = recipe_class(method).presets.get("demo")
    settings = dict(preset.settings) if preset else {}
    if method == "sap":
        settings.update(ssl_config="tiny", heads=2, cache_dir=str(tmp_path / "cache"))
    return make_recipe(method, corpus.labels, **settings)


def save_random_checkpoint(path: Path, method: str, **settings) -> Path:
    recipe, model = random_trained(method, **settings)
    save_checkpoint({"recipe": method, "recipe_state": recipe.state(),
                     "model": model.state_dict()}, path)
    return path


def noise(seconds: float, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(round(seconds * 16000), generator=gen)


def write_wavs(folder: Path, seconds: list[float], *, seed: int = 0,
               names: list[str] | None = None) -> list[Path]:
    """One noise recording per entry of ``seconds`` (16 kHz wav), named a0.wav, a1.wav, ...
    unless ``names`` (paths relative to ``folder``) are given."""
    paths = []
    for index, duration in enumerate(seconds):
        path = folder / (names[index] if names else f"a{index}.wav")
        path.parent.mkdir(parents=True, exist_ok=True)
        save_audio(path, noise(duration, seed + index), 16000)
        paths.append(path)
    return paths
