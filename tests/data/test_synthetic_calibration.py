"""Difficulty of the default synthetic corpus, measured on held-out voices.

Simple classifiers trained with leave-one-session-out must land well above chance (0.25) and
well below 1: a softmax regression on per-utterance MFCC mean+std (raw, and z-scored per
speaker, which needs no labels of the test speaker), and one on the transcript's words
(weakly informative by design). Run as a script to print the numbers:

    PYTHONPATH=. python tests/data/test_synthetic_calibration.py [--seed 0]
"""

from __future__ import annotations

import argparse
import re

import numpy as np
import pytest
import soundfile
import torch
import torchaudio

from fastser.data import Corpus, leave_one_session_out, load_synthetic
from fastser.train.metrics import unweighted_accuracy


def mfcc_statistics(corpus: Corpus, n_mfcc: int = 20) -> np.ndarray:
    """(U, 2 * n_mfcc): mean and standard deviation over frames of each utterance's MFCCs."""
    transform = torchaudio.transforms.MFCC(
        sample_rate=16000, n_mfcc=n_mfcc, melkwargs={"n_fft": 400, "hop_length": 160,
                                                     "n_mels": 40})
    rows = []
    with torch.no_grad():
        for utt in corpus:
            audio, _ = soundfile.read(utt.path, dtype="float32")
            coeffs = transform(torch.from_numpy(audio))
            rows.append(torch.cat([coeffs.mean(dim=1), coeffs.std(dim=1)]).numpy())
    return np.stack(rows)


def bag_of_words(corpus: Corpus) -> np.ndarray:
    """(U, V) word counts of the transcripts."""
    docs = [re.findall(r"[a-z]+", u.transcript.lower()) for u in corpus]
    vocab = {w: i for i, w in enumerate(sorted({w for d in docs for w in d}))}
    counts = np.zeros((len(docs), len(vocab)))
    for row, doc in enumerate(docs):
        for word in doc:
            counts[row, vocab[word]] += 1
    return counts


def per_speaker_zscore(features: np.ndarray, speakers: list[str]) -> np.ndarray:
    out = features.copy()
    for speaker in set(speakers):
        rows = [i for i, s in enumerate(speakers) if s == speaker]
        out[rows] = (features[rows] - features[rows].mean(0)) / (features[rows].std(0) + 1e-6)
    return out


def softmax_regression(x_train, y_train, x_test, num_classes, weight_decay=1e-2):
    """Predicted classes of x_test from an L2-regularised softmax regression (L-BFGS)."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    xt = torch.tensor((x_train - mean) / std)
    xs = torch.tensor((x_test - mean) / std)
    yt = torch.tensor(y_train)
    weight = torch.zeros(xt.shape[1], num_classes, dtype=xt.dtype, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=xt.dtype, requires_grad=True)
    optimiser = torch.optim.LBFGS([weight, bias], max_iter=300, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ weight + bias, yt)
        loss = loss + weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    with torch.no_grad():
        return (xs @ weight + bias).argmax(1).numpy()


def held_out_ua(corpus: Corpus, features: np.ndarray) -> list[float]:
    """UA of each leave-one-session-out fold."""
    targets = np.array(corpus.targets())
    index = {u.id: i for i, u in enumerate(corpus)}
    scores = []
    for split in leave_one_session_out(corpus):
        train = [index[u.id] for u in split.train]
        test = [index[u.id] for u in split.test]
        pred = softmax_regression(features[train], targets[train], features[test],
                                  corpus.num_classes)
        scores.append(unweighted_accuracy(targets[test], pred, corpus.num_classes))
    return scores


def calibration(corpus: Corpus) -> dict[str, list[float]]:
    """Held-out UA per session of the three baselines (one thread: small tensors)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        mfcc = mfcc_statistics(corpus)
        return {
            "audio": held_out_ua(corpus, mfcc),
            "audio, speaker z-scored": held_out_ua(
                corpus, per_speaker_zscore(mfcc, [u.speaker for u in corpus])),
            "text": held_out_ua(corpus, bag_of_words(corpus)),
        }
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_default_corpus_is_learnable_but_not_trivial(tmp_path_factory):
    corpus = load_synthetic(cache_dir=tmp_path_factory.mktemp("calibration"))
    durations = np.array([u.duration for u in corpus])
    assert np.mean((durations >= 2.5) & (durations <= 7.0)) >= 0.8
    assert 0.0 < np.mean(durations < 2.0) <= 0.1
    partial = np.mean([u.emotion_span[0] > 0 for u in corpus])
    assert 0.25 <= partial <= 0.35
    ua = {name: float(np.mean(scores)) for name, scores in calibration(corpus).items()}
    assert 0.62 <= ua["audio"] <= 0.9, ua
    assert 0.7 <= ua["audio, speaker z-scored"] <= 0.92, ua
    assert 0.33 <= ua["text"] <= 0.65, ua


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--utterances", type=int, default=480)
    args = parser.parse_args()
    corpus = load_synthetic(seed=args.seed, utterances=args.utterances)
    for name, scores in calibration(corpus).items():
        print(f"{name:<24} UA per held-out session {np.round(scores, 3).tolist()} "
              f"mean {np.mean(scores):.3f}")


if __name__ == "__main__":
    main()
