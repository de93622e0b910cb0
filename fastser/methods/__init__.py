"""The methods: one folder per method (model, recipe, bench suite, baselines beside the method
they are a baseline of) and this registry, which maps every ``--model`` name to its recipe.

Adding a method is adding one folder ``fastser/methods/<name>/`` and one line in
:data:`METHODS` (docs/architecture.md, "How a method is built").
"""

from __future__ import annotations

import importlib
from typing import Any, Sequence

from fastser.errors import UserError
from fastser.train.recipe import Recipe

#: ``--model`` name -> "module:RecipeClass" (imported on first use).
METHODS: dict[str, str] = {
    "can": "fastser.methods.can:CanRecipe",
    "egemaps": "fastser.methods.egemaps:EgemapsRecipe",
    "glrf": "fastser.methods.glrf:GLRFRecipe",
    "mmtl": "fastser.methods.mmtl:MMTLRecipe",
    "mtl": "fastser.methods.mmtl:MTLRecipe",
    "stl": "fastser.methods.mmtl:STLRecipe",
    "mstr": "fastser.methods.mstr:MSTRRecipe",
    "transformer": "fastser.methods.mstr:TransformerRecipe",
    "sap": "fastser.methods.sap:SAPRecipe",
}


def method_names() -> list[str]:
    """Every ``--model`` name, sorted."""
    return sorted(METHODS)


def method_packages() -> list[str]:
    """The method folders' package names (a folder may hold a method and its baselines)."""
    return sorted({target.split(":")[0] for target in METHODS.values()})


def recipe_class(name: str) -> type[Recipe]:
    """The recipe class of method ``name``; a UserError names the known methods."""
    if name not in METHODS:
        raise UserError(f"unknown model {name!r}; choose one of {', '.join(method_names())}")
    module, cls = METHODS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def make_recipe(name: str, label_names: Sequence[str], **settings: Any) -> Recipe:
    """A recipe of method ``name`` for the classes ``label_names`` with ``settings``."""
    return recipe_class(name)(label_names, **settings)
