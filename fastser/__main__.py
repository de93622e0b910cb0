"""``python -m fastser`` runs the ``fastser`` command."""

from fastser.cli import console

if __name__ == "__main__":
    raise SystemExit(console())
