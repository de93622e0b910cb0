"""The classical SER baseline: openSMILE eGeMAPSv02 functionals (:mod:`.features`, the optional
extra fastser[egemaps]) + a scikit-learn linear classifier held in an nn.Module (:mod:`.model`),
as the recipe "egemaps" (:mod:`.recipe`)."""

from fastser.methods.egemaps.model import ClassProbabilities, LinearFunctionals
from fastser.methods.egemaps.recipe import EgemapsRecipe, EgemapsSettings

__all__ = ["ClassProbabilities", "EgemapsRecipe", "EgemapsSettings", "LinearFunctionals"]
