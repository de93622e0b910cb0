"""Moved: the method registry is fastser.methods (METHODS, method_names, recipe_class,
make_recipe) and each recipe lives in its method folder; the names here forward to them until
fastser 0.3."""

import warnings

from fastser.methods import METHODS, make_recipe, method_names, recipe_class

warnings.warn("fastser.train.recipes has moved to fastser.methods; the old import path will be "
              "removed in fastser 0.3", DeprecationWarning, stacklevel=2)

RECIPES = METHODS
recipe_names = method_names

__all__ = ["RECIPES", "make_recipe", "recipe_class", "recipe_names"]
