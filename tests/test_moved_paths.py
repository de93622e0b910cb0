"""Import paths of fastser 0.1 keep working in 0.2, each with a DeprecationWarning that names
the new path, and give the very objects of the new modules."""

import importlib
import sys

import pytest

MOVED = {
    "fastser.models.glrf": "fastser.methods.glrf.model",
    "fastser.models.sap": "fastser.methods.sap.model",
    "fastser.models.mstr": "fastser.methods.mstr.model",
    "fastser.models.transformer": "fastser.methods.mstr.transformer",
    "fastser.models.can": "fastser.methods.can.model",
    "fastser.models.can_text": "fastser.methods.can.text",
    "fastser.models.can_layers": "fastser.methods.can.layers",
    "fastser.models.mmtl": "fastser.methods.mmtl",
    "fastser.models.mmtl_meta": "fastser.methods.mmtl",
    "fastser.train.recipes.glrf": "fastser.methods.glrf.recipe",
    "fastser.train.recipes.sap": "fastser.methods.sap.recipe",
    "fastser.train.recipes.mstr": "fastser.methods.mstr.recipe",
    "fastser.train.recipes.can": "fastser.methods.can.recipe",
    "fastser.train.recipes.mmtl": "fastser.methods.mmtl",
    "fastser.recognizer": "fastser.inference.recognizer",
    "fastser.streaming": "fastser.inference.streaming",
    "fastser.export": "fastser.inference.export",
    "fastser.train.distributed": "fastser.distributed",
}


@pytest.mark.parametrize("old, new", sorted(MOVED.items()))
def test_old_module_path_warns_and_is_the_new_module(old, new, monkeypatch):
    monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.warns(DeprecationWarning, match=f"{old} has moved to {new}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)


def test_old_registry_names_forward_to_the_methods_registry(monkeypatch):
    from fastser import methods

    monkeypatch.delitem(sys.modules, "fastser.train.recipes", raising=False)
    with pytest.warns(DeprecationWarning, match="fastser.train.recipes has moved"):
        recipes = importlib.import_module("fastser.train.recipes")
    assert recipes.RECIPES is methods.METHODS
    assert recipes.recipe_class("glrf") is methods.recipe_class("glrf")
    assert recipes.recipe_names() == methods.method_names()
