"""``python -m fastser`` runs the ``fastser`` command."""

from fastser.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
