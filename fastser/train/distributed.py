"""Moved to fastser.distributed (this import path works until fastser 0.3)."""

from fastser._deprecated import moved

moved(__name__, "fastser.distributed")
