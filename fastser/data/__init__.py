"""Datasets: the utterance record and corpus type, readers of local copies of IEMOCAP,
CREMA-D, RAVDESS and EmoDB, the synthetic default corpus, evaluation protocols and the
collation of ragged batches."""
