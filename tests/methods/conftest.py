import pytest


@pytest.fixture(scope="session")
def corpus(tiny_corpus):
    """The recipes' tests' corpus: the tiny synthetic one (tests/conftest.py)."""
    return tiny_corpus
