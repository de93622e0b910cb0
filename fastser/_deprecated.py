"""Import paths that moved in fastser 0.2, kept working for one release."""

from __future__ import annotations

import importlib
import sys
import warnings

REMOVED_IN = "0.3"


def moved(old: str, new: str) -> None:
    """Make the module being imported as ``old`` the module ``new``, with a DeprecationWarning
    (called from the old path's stub module)."""
    warnings.warn(f"{old} has moved to {new}; the old import path will be removed in fastser "
                  f"{REMOVED_IN}", DeprecationWarning, stacklevel=3)
    sys.modules[old] = importlib.import_module(new)
