"""Naive eager PyTorch versions of every fastser op.

They follow ARCHITECTURE.md section 3 literally, written as the straightforward vectorised
code a competent researcher would write.  They are the oracle of the op tests and the
baseline of the benchmarks, so they favour clarity over speed and never call a fastser kernel.
"""
