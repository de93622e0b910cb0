"""GLRF (Ding et al., "Stable Speech Emotion Recognition with Head-k-Pooling Loss"): the GLRA
segment scorer (:mod:`.model`), its recipe with the head-k-pooling loss (:mod:`.recipe`), its
streaming front end (:mod:`.streaming`) and its bench suite (:mod:`.bench`)."""

from fastser.methods.glrf.model import GLRF, GLRFInference
from fastser.methods.glrf.recipe import GLRFRecipe, GLRFSettings

__all__ = ["GLRF", "GLRFInference", "GLRFRecipe", "GLRFSettings"]
