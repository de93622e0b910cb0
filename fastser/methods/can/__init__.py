"""CAN (Lee et al., "Multimodal Speech Emotion Recognition using Cross Attention with Aligned
Audio and Text"): the cross attention network and its audio encoder (:mod:`.model`), the text
side: vocabulary, GloVe files, text encoder (:mod:`.text`), the ragged BLSTM both encoders use
(:mod:`.layers`), its recipe on word-aligned MFCC segments (:mod:`.recipe`) and its bench suite
(:mod:`.bench`)."""

from fastser.methods.can.model import CAN, CANInference, can_loss, fuse_predictions
from fastser.methods.can.recipe import CanItem, CanRecipe, CanSettings, WordTimingsError
from fastser.methods.can.text import TextEncoder, Vocabulary, load_glove

__all__ = ["CAN", "CANInference", "CanItem", "CanRecipe", "CanSettings", "TextEncoder",
           "Vocabulary", "WordTimingsError", "can_loss", "fuse_predictions", "load_glove"]
