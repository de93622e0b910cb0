"""Moved: the models live in their method folders, fastser.methods.<method>.model (the modules
here forward to them until fastser 0.3)."""
