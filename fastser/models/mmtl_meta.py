"""Moved to fastser.methods.mmtl, which exports what this module held (this import path works
until fastser 0.3)."""

from fastser._deprecated import moved

moved(__name__, "fastser.methods.mmtl")
