"""MMTL (Cai et al., "Meta Multi-task Learning for Speech Emotion Recognition") and its two
baselines: the Table 1 CNN-LSTM meta learner and transfer learner (:mod:`.model`), the
meta-learning maths (:mod:`.meta`), the per-speaker episodes (:mod:`.episodes`), test-time
adaptation (:mod:`.adaptation`), the "mmtl" recipe and the spectrogram recipe it shares with
the baselines (:mod:`.recipe`), the "stl" and "mtl" baselines (:mod:`.baselines`) and the bench
suite (:mod:`.bench`)."""

from fastser.methods.mmtl.adaptation import SpeakerAdaptedNet, adapt_meta, adapted_logits
from fastser.methods.mmtl.baselines import MTLRecipe, MultiTaskNet, SingleTaskNet, STLRecipe
from fastser.methods.mmtl.episodes import SpeakerEpisodes
from fastser.methods.mmtl.meta import (AFFECT_NAMES, class_weights, discretise_affect,
                                       outer_gradients, outer_gradients_sequential,
                                       weighted_cross_entropy)
from fastser.methods.mmtl.model import (AFFECT_CLASSES, TABLE1_CONV, MMTLNet,
                                        SegmentPosteriorMean, utterance_posteriors)
from fastser.methods.mmtl.recipe import (MMTLRecipe, MMTLSettings, SegmentItem,
                                         SpectrogramRecipe, SpectrogramSettings)

__all__ = ["AFFECT_CLASSES", "AFFECT_NAMES", "MMTLNet", "MMTLRecipe", "MMTLSettings",
           "MTLRecipe", "MultiTaskNet", "STLRecipe", "SegmentItem", "SegmentPosteriorMean",
           "SingleTaskNet", "SpeakerAdaptedNet", "SpeakerEpisodes", "SpectrogramRecipe",
           "SpectrogramSettings", "TABLE1_CONV", "adapt_meta", "adapted_logits", "class_weights",
           "discretise_affect", "outer_gradients", "outer_gradients_sequential",
           "utterance_posteriors", "weighted_cross_entropy"]
