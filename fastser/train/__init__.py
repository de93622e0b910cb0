"""Training: trainer, meta-learning (MMTL), metrics, checkpoints."""
