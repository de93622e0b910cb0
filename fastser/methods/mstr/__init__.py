"""MSTR (Li et al., "Multi-Scale Temporal Transformer for Speech Emotion Recognition") and its
vanilla-Transformer baseline: the MSTR model on the fused fractal attention op
(:mod:`.model`), the Transformer skeleton both share and the baseline (:mod:`.transformer`),
their recipes "mstr" and "transformer" (:mod:`.recipe`) and the bench suite (:mod:`.bench`)."""

from fastser.methods.mstr.model import MSTR, attention_flops
from fastser.methods.mstr.recipe import (MSTRRecipe, MSTRSettings, TransformerRecipe,
                                         TransformerSettings)
from fastser.methods.mstr.transformer import ClassProbabilities, FrameTransformer, VanillaTransformer

__all__ = ["MSTR", "ClassProbabilities", "FrameTransformer", "MSTRRecipe", "MSTRSettings",
           "TransformerRecipe", "TransformerSettings", "VanillaTransformer", "attention_flops"]
