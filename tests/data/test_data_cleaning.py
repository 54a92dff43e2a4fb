"""clean_text, STOPWORDS, remove_stopwords (minillm/data/cleaning.py, stopwords.py)."""
import re

import pytest
from hypothesis import given, strategies as st

from minillm.data import NEGATIONS, STOPWORDS, clean_text, remove_stopwords


def chapter_clean_text(text):
    """The chapter's function (section 5.1), verbatim."""
    text = re.sub(r'\W', ' ', text)
    text = re.sub(r'\s+', ' ', text)
    text = text.lower()
    return text


@given(st.text())
def test_clean_text_reproduces_the_chapter_when_normalization_and_strip_are_off(text):
    assert clean_text(text, normalize=None, strip=False) == chapter_clean_text(text)


@given(st.text())
def test_clean_text_output_has_only_word_characters_and_single_spaces(text):
    out = clean_text(text)
    assert re.fullmatch(r"(\w+( \w+)*)?", out), out
    assert clean_text(out) == out                      # idempotent


def test_clean_text_steps_are_optional():
    text = "Ｆｕｌｌ-width ﬁne  Text!\nNext_line"
    assert clean_text(text) == "full width fine text next_line"
    assert clean_text(text, normalize=None) == "ｆｕｌｌ width ﬁne text next_line"
    assert clean_text(text, lowercase=False, normalize=None) == "Ｆｕｌｌ width ﬁne Text Next_line"
    assert clean_text(text, collapse_whitespace=False) == "full width fine  text \nnext_line"
    assert clean_text(text, strip_non_word=False) == "full-width fine text! next_line"
    assert clean_text("  a  ", strip=False) == " a "


def test_clean_text_rejects_bad_input():
    with pytest.raises(ValueError, match="normalize must be one of"):
        clean_text("x", normalize="NFX")
    with pytest.raises(TypeError, match="expects a str"):
        clean_text(b"bytes")


def test_stopwords_keep_negations_and_remove_function_words():
    assert not (NEGATIONS & STOPWORDS), "negations must survive stopword removal"
    assert {"the", "a", "of", "is", "and"} <= STOPWORDS
    assert all(w == w.lower() for w in STOPWORDS)
    tokens = ["The", "film", "was", "not", "good", "at", "all"]
    assert remove_stopwords(tokens) == ["film", "not", "good"]
    assert remove_stopwords(tokens, case_sensitive=True) == ["The", "film", "not", "good"]
    assert remove_stopwords(tokens, stopwords={"film"}) == ["The", "was", "not", "good", "at", "all"]
    with pytest.raises(TypeError, match="split it first"):
        remove_stopwords("the film")
