"""The registry of methods: name -> recipe class (imported on first use)."""

from __future__ import annotations

import importlib
from typing import Any, Sequence

from fastser.train.recipe import Recipe

# name -> "module:Class"
RECIPES: dict[str, str] = {
    "can": "fastser.train.recipes.can:CanRecipe",
    "glrf": "fastser.train.recipes.glrf:GLRFRecipe",
    "mmtl": "fastser.train.recipes.mmtl:MMTLRecipe",
    "mtl": "fastser.train.recipes.mmtl:MTLRecipe",
    "stl": "fastser.train.recipes.mmtl:STLRecipe",
    "mstr": "fastser.train.recipes.mstr:MSTRRecipe",
    "transformer": "fastser.train.recipes.mstr:TransformerRecipe",
    "sap": "fastser.train.recipes.sap:SAPRecipe",
}


def recipe_names() -> list[str]:
    return sorted(RECIPES)


def recipe_class(name: str) -> type[Recipe]:
    if name not in RECIPES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(recipe_names())}")
    module, cls = RECIPES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def make_recipe(name: str, label_names: Sequence[str], **config: Any) -> Recipe:
    return recipe_class(name)(label_names, **config)
