"""Every method has the "demo" and (but the classical egemaps reference) "paper" presets;
each preset's settings and training options are valid (a paper preset that needs a file the
user must give says so), and the paper presets take the papers' optimiser, learning rate,
batch size, epochs and clipping."""

import pytest

from fastser.errors import SettingsError
from fastser.methods import method_names, recipe_class
from fastser.train.trainer import TrainConfig

LABELS = ["neutral", "happy", "sad", "angry"]
#: (optimizer, lr, batch size, epochs, clipping, patience, monitor) of each paper (docs/methods.md)
PAPERS = {
    "mmtl": ("adam", 1e-3, 48, 300, None, None, "ua"),
    "mtl": ("adam", 1e-3, 64, 300, None, None, "ua"),
    "stl": ("adam", 1e-3, 64, 300, None, None, "ua"),
    "can": ("adam", 1e-3, 64, 100, 1.0, 10, "loss"),
    "sap": ("adamw", 3e-5, 64, 30, 1.0, 5, "loss"),
    "mstr": ("adam", 1e-4, 32, 150, None, None, "ua"),
    "transformer": ("adam", 1e-4, 32, 150, None, None, "ua"),
    "glrf": ("adamw", 1e-3, 16, 30, 5.0, None, "auto"),  # no procedure in the paper: fastser's
}


#: Methods that are no paper's: the classical reference (a demo preset, no paper preset).
BASELINES = {"egemaps"}


def test_every_method_but_the_baselines_has_a_paper():
    assert set(method_names()) == set(PAPERS) | BASELINES


@pytest.mark.parametrize("name", method_names())
def test_every_method_has_a_valid_demo_and_paper_preset(name):
    cls = recipe_class(name)
    assert {"demo"} | ({"paper"} if name in PAPERS else set()) <= set(cls.presets)
    for preset_name, preset in cls.presets.items():
        TrainConfig(**preset.training)
        if name == "can" and preset_name == "paper":
            with pytest.raises(SettingsError, match="set glove=PATH"):
                cls.Settings.build(name, preset.settings)
            cls.Settings.build(name, {**preset.settings, "glove": "glove.840B.300d.txt"})
        else:
            cls.Settings.build(name, preset.settings)
    if name in BASELINES:
        assert "paper" not in cls.presets
        return
    config = TrainConfig(**cls.presets["paper"].training)
    assert (config.optimizer, config.lr, config.batch_size, config.epochs, config.grad_clip,
            config.patience, config.monitor) == PAPERS[name]
