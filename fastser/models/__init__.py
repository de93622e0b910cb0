"""The SER methods and their baselines, over feature tensors (no audio I/O)."""
