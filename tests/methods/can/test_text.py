"""fastser.methods.can.text: vocabulary (padding and unknown tokens), GloVe-format files and
their errors, embedding initialisation."""

import pytest
import torch

from fastser.methods.can.text import (PAD_ID, UNK_ID, TextEncoder, Vocabulary, load_glove,
                                      normalize_word)


def test_vocabulary_is_built_by_frequency_with_pad_and_unknown_first():
    vocab = Vocabulary.build([["The", "cat", "sat"], ["the", "dog"], ["THE", "cat"]])
    assert vocab.words == ["the", "cat", "dog", "sat"]
    assert len(vocab) == 6 and (PAD_ID, UNK_ID) == (0, 1)
    assert vocab.encode(["Cat", "the", "zebra", "Dog"]).tolist() == [3, 2, UNK_ID, 4]
    assert "CAT" in vocab and "zebra" not in vocab
    assert vocab.encode(["zebra"]).dtype == torch.long


def test_min_count_sends_rare_words_to_the_unknown_token():
    vocab = Vocabulary.build([["a", "b", "a"], ["c", "a", "b"]], min_count=2)
    assert vocab.words == ["a", "b"]
    assert vocab.encode(["c"]).tolist() == [UNK_ID]
    with pytest.raises(ValueError, match="min_count"):
        Vocabulary.build([["a"]], min_count=0)


@pytest.mark.parametrize("words,message", [(["a", "A"], "duplicate"), (["a", ""], "non-empty"),
                                           (["<unk>"], "reserved")])
def test_vocabulary_errors(words, message):
    with pytest.raises(ValueError, match=message):
        Vocabulary(words)


def write(tmp_path, text, name="vectors.txt"):
    path = tmp_path / name
    path.write_text(text)
    return path


GLOVE = ("the 0.1 0.2 0.3\n"
         "Cat 1.0 -1.0 0.5\n"
         "cat 9.0 9.0 9.0\n"          # a second casing: the first occurrence wins
         "new york 2.0 2.0 2.0\n"     # words may contain spaces
         "unused x y z\n"             # values of words outside the vocabulary are not parsed
         "dog 0 0 1e-1  \n"
         "\n")


def test_glove_file_loads_vocabulary_vectors_and_reports_coverage(tmp_path):
    vocab = Vocabulary(["the", "cat", "new york", "zebra", "dog"])
    vectors, found, coverage = load_glove(write(tmp_path, GLOVE), vocab, 3)
    assert vectors.shape == (7, 3) and found.tolist() == [False, False, True, True, True,
                                                          False, True]
    assert vectors[vocab.index["cat"]].tolist() == [1.0, -1.0, 0.5]
    assert vectors[vocab.index["new york"]].tolist() == [2.0, 2.0, 2.0]
    torch.testing.assert_close(vectors[vocab.index["dog"]], torch.tensor([0.0, 0.0, 0.1]))
    assert vectors[vocab.index["zebra"]].abs().sum() == 0
    assert (coverage.found, coverage.total, coverage.missing) == (4, 5, ("zebra",))
    assert coverage.fraction == 0.8 and "4/5" in str(coverage) and "zebra" in str(coverage)


@pytest.mark.parametrize("text,message", [
    ("the 0.1 0.2\ncat 1 2\n", r"vectors have 2 values \(line 1\).*3 dimensions"),
    ("the 0.1 0.2 0.3\ncat 1 2\n", r"line 2: expected a word and 3 values, found 2"),
    ("the 0.1 0.2 0.3\ndog 1 2 3\ncat 1 two 3\n", r"line 3: could not convert.*'two'"),
    ("the 0.1 0.2 0.3\ncat 1 nan 3\n", r"line 2: the vector of 'cat' has non-finite"),
    ("the\n", r"line 1: expected 'word v1 v2 ... vD'"),
    ("", "empty"),
])
def test_glove_file_errors_name_the_problem_and_line(tmp_path, text, message):
    vocab = Vocabulary(["the", "cat", "dog"])
    with pytest.raises(ValueError, match=message):
        load_glove(write(tmp_path, text), vocab, 3)


def test_missing_glove_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="GloVe file not found: .*nope.txt"):
        load_glove(tmp_path / "nope.txt", Vocabulary(["a"]), 3)


def test_embeddings_take_the_loaded_vectors_and_random_rows_elsewhere(tmp_path):
    vocab = Vocabulary(["the", "cat", "zebra"])
    vectors, found, _ = load_glove(write(tmp_path, GLOVE), vocab, 3)
    torch.manual_seed(0)
    encoder = TextEncoder(len(vocab), embed_dim=3, hidden=4)
    encoder.load_vectors(vectors, found)
    weight = encoder.embedding.weight
    assert torch.equal(weight[found], vectors[found])
    assert weight[PAD_ID].abs().sum() == 0
    assert weight[UNK_ID].abs().sum() > 0 and weight[vocab.index["zebra"]].abs().sum() > 0
    assert weight.requires_grad
    with pytest.raises(ValueError, match="load_vectors"):
        encoder.load_vectors(vectors[:2], found[:2])


def test_words_are_case_folded():
    assert normalize_word("Straße") == "strasse" and normalize_word("HELLO") == "hello"


def test_glove_words_in_file_order_case_folded_and_limited(tmp_path):
    from fastser.methods.can.text import glove_words

    path = tmp_path / "g.txt"
    path.write_text("the 0.1 0.2\nThe 0.3 0.4\nof 0.5 0.6\nnew york 0.7 0.8\n<unk> 1 1\n")
    assert glove_words(path) == ["the", "of", "new york"]
    assert glove_words(path, limit=2) == ["the", "of"]
