from hypothesis import given
from hypothesis import strategies as st

from explainer.text import sentence_windows, tokenize


def test_tokenize_keeps_leading_whitespace_and_punctuation():
    assert tokenize("Hi there. Bye!") == ["Hi", " there", ".", " Bye", "!"]


def test_sentence_windows_cut_after_sentence_ends():
    tokens = tokenize("A b. C d e! F")
    assert sentence_windows(tokens, len(tokens)) == [(0, 3), (3, 7), (7, 8)]


@given(st.text(max_size=200), st.integers(min_value=0, max_value=50))
def test_windows_partition_the_positions(text, extra):
    tokens = tokenize(text)
    positions = len(tokens) + extra
    windows = sentence_windows(tokens, positions)
    covered = [i for start, end in windows for i in range(start, end)]
    assert covered == list(range(positions))
    assert all(start < end for start, end in windows)
