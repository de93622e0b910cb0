"""Evaluation protocols: speaker-disjoint, complete, reproducible, and clear when impossible."""

from __future__ import annotations

import pytest

from fastser.data import (Corpus, Utterance, leave_one_session_out, leave_one_speaker_out,
                          read_crema_d, read_iemocap, speaker_split)


def speakers(corpus: Corpus) -> set[str]:
    return {u.speaker for u in corpus}


def check_disjoint_and_complete(corpus: Corpus, split) -> None:
    train, val, test = speakers(split.train), speakers(split.validation), speakers(split.test)
    assert not (train & test) and not (train & val) and not (val & test)
    assert train and test
    ids = [u.id for part in (split.train, split.validation, split.test) for u in part]
    assert sorted(ids) == sorted(u.id for u in corpus)
    assert split.train.labels == split.test.labels == corpus.labels


def as_tuple(split):
    return tuple(tuple(u.id for u in part) for part in (split.train, split.validation, split.test))


@pytest.fixture(params=["synthetic", "iemocap", "crema-d"])
def any_corpus(request, small_synthetic, iemocap_root, crema_root):
    return {"synthetic": lambda: small_synthetic, "iemocap": lambda: read_iemocap(iemocap_root),
            "crema-d": lambda: read_crema_d(crema_root)}[request.param]()


def test_leave_one_session_out(any_corpus):
    splits = leave_one_session_out(any_corpus)
    assert [s.name for s in splits] == [f"session {s}" for s in any_corpus.sessions]
    for split, session in zip(splits, any_corpus.sessions):
        check_disjoint_and_complete(any_corpus, split)
        assert {u.session for u in split.test} == {session}
        assert len(split.validation) == 0
    tested = [u.id for s in splits for u in s.test]
    assert sorted(tested) == sorted(u.id for u in any_corpus)  # every utterance tested once


def test_leave_one_speaker_out(any_corpus):
    splits = leave_one_speaker_out(any_corpus)
    assert [speakers(s.test) for s in splits] == [{s} for s in any_corpus.speakers]
    for split in splits:
        check_disjoint_and_complete(any_corpus, split)


def test_validation_speakers_are_drawn_reproducibly(small_synthetic):
    for protocol in (leave_one_session_out, leave_one_speaker_out):
        first = protocol(small_synthetic, validation_speakers=2, seed=7)
        again = protocol(small_synthetic, validation_speakers=2, seed=7)
        other = protocol(small_synthetic, validation_speakers=2, seed=8)
        assert [as_tuple(s) for s in first] == [as_tuple(s) for s in again]
        assert [as_tuple(s) for s in first] != [as_tuple(s) for s in other]
        for split in first:
            check_disjoint_and_complete(small_synthetic, split)
            assert len(speakers(split.validation)) == 2


def test_speaker_split_by_fractions_and_counts(any_corpus):
    n = len(any_corpus.speakers)
    split = speaker_split(any_corpus, test=0.34, validation=0.0, seed=1)
    check_disjoint_and_complete(any_corpus, split)
    assert len(speakers(split.test)) == max(1, round(0.34 * n))
    assert as_tuple(split) == as_tuple(speaker_split(any_corpus, test=0.34, validation=0.0,
                                                     seed=1))
    counted = speaker_split(any_corpus, test=1, validation=1, seed=2)
    check_disjoint_and_complete(any_corpus, counted)
    assert (len(speakers(counted.test)), len(speakers(counted.validation))) == (1, 1)


def test_speaker_split_seeds_differ(small_synthetic):
    tests = {tuple(sorted(speakers(speaker_split(small_synthetic, seed=s).test)))
             for s in range(6)}
    assert len(tests) > 1
    split = speaker_split(small_synthetic)  # 10 speakers: 2 test, 1 validation, 7 train
    assert [len(speakers(p)) for p in (split.train, split.validation, split.test)] == [7, 1, 2]


def one_speaker_corpus(sessions=("s1",)) -> Corpus:
    return Corpus("one", ("a", "b"), tuple(
        Utterance(f"u{i}", f"/x/u{i}.wav", "a", "spk", session) for i, session in
        enumerate(sessions)))


def test_impossible_protocols_raise():
    with pytest.raises(ValueError, match=r"has 1 session\(s\).*needs at least 2"):
        leave_one_session_out(one_speaker_corpus())
    with pytest.raises(ValueError, match=r"has 1 speaker\(s\).*needs at least 2"):
        leave_one_speaker_out(one_speaker_corpus())
    with pytest.raises(ValueError, match="more than one session"):
        leave_one_session_out(one_speaker_corpus(("s1", "s2")))
    with pytest.raises(ValueError, match="leave none to train"):
        speaker_split(one_speaker_corpus(), test=1, validation=0)


@pytest.mark.parametrize("kwargs, message", [
    ({"test": 0.0}, "at least one speaker"),
    ({"test": 1.0}, r"fraction must be in \[0, 1\)"),
    ({"test": -1}, "count must be >= 0"),
    ({"test": True}, "fraction or a count"),
    ({"test": 5, "validation": 5}, "leave none to train"),
])
def test_speaker_split_argument_errors(small_synthetic, kwargs, message):
    with pytest.raises(ValueError, match=message):
        speaker_split(small_synthetic, **kwargs)


def test_validation_count_errors(small_synthetic):
    with pytest.raises(ValueError, match="leaves no training speaker"):
        leave_one_session_out(small_synthetic, validation_speakers=8)
    with pytest.raises(ValueError, match="int >= 0"):
        leave_one_speaker_out(small_synthetic, validation_speakers=-1)


# -- the papers' protocols ---------------------------------------------------------------------
def test_session_speaker_validates_on_the_session_partner(iemocap_root):
    from fastser.data.protocols import make_splits

    corpus = read_iemocap(iemocap_root)
    splits = make_splits(corpus, "session-speaker")
    assert sorted(tuple(speakers(s.test)) for s in splits) == sorted(
        (s,) for s in corpus.speakers)  # every speaker tested once
    for split in splits:
        check_disjoint_and_complete(corpus, split)
        (tested,) = speakers(split.test)
        session = split.test[0].session
        assert speakers(split.validation) == {u.speaker for u in corpus
                                             if u.session == session} - {tested}
        assert all(u.session != session for u in split.train)
        assert not split.speaker_dependent


@pytest.mark.parametrize("validation, k", [(False, 5), (True, 10), (True, 3)])
def test_utterance_kfold_is_speaker_dependent_and_tests_every_utterance_once(
        small_synthetic, validation, k):
    from fastser.data.protocols import make_splits, utterance_kfold

    splits = utterance_kfold(small_synthetic, k=k, validation=validation, seed=4)
    assert len(splits) == k
    ids = sorted(u.id for u in small_synthetic)
    assert sorted(u.id for s in splits for u in s.test) == ids
    sizes = {len(s.test) for s in splits}
    assert max(sizes) - min(sizes) <= 1  # k equal folds
    for i, split in enumerate(splits):
        assert split.speaker_dependent and "speaker-dependent" in split.name
        parts = [[u.id for u in p] for p in (split.train, split.validation, split.test)]
        assert sorted(sum(parts, [])) == ids  # disjoint, complete
        if validation:  # the next fold validates: 8:1:1 for k = 10
            assert {u.id for u in split.validation} == {u.id for u in splits[(i + 1) % k].test}
        else:
            assert not parts[1]
    assert speakers(splits[0].train) & speakers(splits[0].test)  # speakers shared
    again = make_splits(small_synthetic, "utterance-kfold-val" if validation
                        else "utterance-kfold", num_folds=k, seed=4)
    assert [as_tuple(s) for s in again] == [as_tuple(s) for s in splits]
    other = utterance_kfold(small_synthetic, k=k, validation=validation, seed=5)
    assert [as_tuple(s) for s in other] != [as_tuple(s) for s in splits]


def test_paper_protocol_errors(small_synthetic):
    from fastser.data.protocols import make_splits, session_speakers, utterance_kfold

    with pytest.raises(ValueError, match="integer >= 3"):
        utterance_kfold(small_synthetic, k=2, validation=True)
    with pytest.raises(ValueError, match="integer >= 2"):
        utterance_kfold(small_synthetic, k=1)
    with pytest.raises(ValueError, match="leave a fold empty"):
        utterance_kfold(small_synthetic, k=len(small_synthetic) + 1)
    with pytest.raises(ValueError, match="number of folds applies to utterance-kfold"):
        make_splits(small_synthetic, "session", num_folds=3)
    lonely = Corpus("two", ("a", "b"), tuple(
        Utterance(f"u{i}", f"/x/u{i}.wav", "a", f"spk{i}", f"s{i}") for i in range(2)))
    with pytest.raises(ValueError, match="session 's0' has one speaker"):
        session_speakers(lonely)
