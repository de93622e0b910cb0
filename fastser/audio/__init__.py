"""Audio front end: I/O and resampling, features, segmentation, VAD, SSL front ends and
word alignment."""
