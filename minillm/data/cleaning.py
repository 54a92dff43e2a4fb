"""Text cleaning and stopword removal (chapter section 3.1 / 5.1), made configurable.

The chapter cleans text with

    text = re.sub(r'\\W', ' ', text); text = re.sub(r'\\s+', ' ', text); text = text.lower()

and then removes stopwords before *language-model* training. minillm keeps each step
as an option of :func:`clean_text`, and keeps stopword removal separate
(:func:`remove_stopwords`): it is a feature-engineering step for bag-of-words
classifiers, never applied to language-model text by default, because an LM has to
learn exactly the grammar that stopword removal deletes ("the", "of", "is", "not").
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from .stopwords import STOPWORDS

_NON_WORD = re.compile(r"[^\w\s]")   # neither word character nor whitespace
_WHITESPACE = re.compile(r"\s+")
_NORMAL_FORMS = ("NFC", "NFKC", "NFD", "NFKD")


def clean_text(
    text: str,
    *,
    lowercase: bool = True,
    strip_non_word: bool = True,
    collapse_whitespace: bool = True,
    normalize: str | None = "NFKC",
    strip: bool = True,
) -> str:
    r"""Clean ``text`` the way the chapter does (section 5.1), each step optional.

    Steps, in this order:

    1. Unicode normalisation (``normalize``: "NFKC" by default, which folds
       compatibility characters such as "ﬁ" -> "fi" and full-width letters; None skips).
    2. ``strip_non_word``: every character that is neither a word character nor
       whitespace becomes a space (the chapter's ``re.sub(r'\W', ' ', text)``, except
       that whitespace is left to step 3, so ``collapse_whitespace=False`` keeps line
       breaks; as in the chapter, "_" is a word character and stays).
    3. ``collapse_whitespace``: every run of whitespace becomes one space
       (``re.sub(r'\s+', ' ', text)``).
    4. ``lowercase`` (``str.lower``, Unicode-aware).
    5. ``strip``: remove leading and trailing whitespace.

    This is lossy by design: do not feed its output to a tokenizer whose round trip
    you rely on. Example: ``clean_text("Don't panic!")`` -> ``"don t panic"``.
    """
    if not isinstance(text, str):
        raise TypeError(f"clean_text expects a str, got {type(text).__name__}")
    if normalize is not None:
        if normalize not in _NORMAL_FORMS:
            raise ValueError(f"normalize must be one of {_NORMAL_FORMS} or None, got {normalize!r}")
        text = unicodedata.normalize(normalize, text)
    if strip_non_word:
        text = _NON_WORD.sub(" ", text)
    if collapse_whitespace:
        text = _WHITESPACE.sub(" ", text)
    if lowercase:
        text = text.lower()
    if strip:
        text = text.strip()
    return text


def remove_stopwords(
    tokens: Iterable[str], stopwords: Iterable[str] | None = None, *, case_sensitive: bool = False
) -> list[str]:
    """Drop the tokens that are stopwords (default: the bundled English ``STOPWORDS``).

    For bag-of-words classification features only. Negations ("not", "never", "n't")
    are not stopwords here, since dropping them reverses the sentiment of "not good".
    Comparison is case-insensitive unless ``case_sensitive=True``.
    """
    if isinstance(tokens, str):
        raise TypeError("remove_stopwords expects a sequence of tokens, got a str; split it first")
    words = STOPWORDS if stopwords is None else frozenset(stopwords)
    if case_sensitive:
        return [tok for tok in tokens if tok not in words]
    words = frozenset(w.lower() for w in words)
    return [tok for tok in tokens if tok.lower() not in words]
