"""Audio front end: I/O and resampling, features, segmentation, VAD, SSL front ends and
word alignment."""

from fastser.audio.alignment import (MARKERS, WordSegments, WordTiming, aligned_segments,
                                     equal_segments, word_frame_ranges)
from fastser.audio.features import MFCC, LogSpectrogram, log_spectrogram, mfcc
from fastser.audio.io import (AudioWarning, load_audio, resample, save_audio,
                              validate_waveform)
from fastser.audio.segmentation import (Segments, equal_pieces, fixed_windows, num_windows,
                                        piece_bounds, window_starts)
from fastser.audio.vad import frames_to_ssl, ssl_num_frames, ssl_vad_mask, vad_frames

__all__ = [
    "MARKERS", "MFCC", "AudioWarning", "LogSpectrogram", "Segments", "WordSegments",
    "WordTiming", "aligned_segments", "equal_pieces", "equal_segments", "fixed_windows",
    "frames_to_ssl", "load_audio", "log_spectrogram", "mfcc", "num_windows", "piece_bounds",
    "resample", "save_audio", "ssl_num_frames", "ssl_vad_mask", "validate_waveform",
    "vad_frames", "window_starts", "word_frame_ranges",
]
