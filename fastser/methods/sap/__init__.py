"""SAP (Hyeon et al., "Enhancing SER through Segmental Average Pooling of Self-Supervised
Learning Features"): the SAP head over SSL frame features and the trained model around it
(:mod:`.model`), its recipe with the SSL front end, the feature cache and the multitask loss
(:mod:`.recipe`), and its bench suite (:mod:`.bench`)."""

from fastser.methods.sap.model import SAPClassifier, SAPHead, SAPModel, SAPOutput
from fastser.methods.sap.recipe import SAPItem, SAPRecipe, SAPSettings
from fastser.train.kit.ssl import SSL_PRESETS

__all__ = ["SSL_PRESETS", "SAPClassifier", "SAPHead", "SAPItem", "SAPModel", "SAPOutput",
           "SAPRecipe", "SAPSettings"]
