"""What the translation and question-answering models can vouch for: a checked output.

The two applications are trained on closed, generated corpora (:func:`~minillm.data.dates_corpus`,
:func:`~minillm.data.qa_corpus`), and a model answers whatever it is given: asked
"where does bob live ?" about "alice lives in paris . bob lives in rome ." it returns a
span all the same, and "hello world" translates to some date. Each output therefore
comes with

- ``unknown_tokens`` / ``tokens``: the input's pieces that the run's tokenizer encodes
  as ``<unk>`` (they all look alike to the model), and ``unknown_share``, their share;
- ``in_domain``: whether the input has the shape of the training corpus, checked
  against the corpus generator's own templates and word lists
  (:func:`~minillm.data.qa.qa_format_problem`, :func:`~minillm.data.parallel.date_format_problem`);
- ``confidence``: the model's own probability for its output (see each application);
- ``warning``: ``None``, or a sentence saying why the output is unreliable.

A high ``confidence`` does not make an out-of-domain output right: the model was never
taught to doubt, which is why the first two checks look at the input itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

__all__ = ["Checked", "CheckedAnswer", "unknown_count", "warning_text", "CHECK_FIELDS", "check_values"]

# the checks as an endpoint's answer fields (minillm.train.spec.Endpoint): what the model can
# vouch for; a ``warning`` is set when some input tokens are unknown to the model or the input
# is not of the training corpus's shape
CHECK_FIELDS = {
    "unknown_tokens": (int, {"description": "input tokens the model's tokenizer does not know (<unk>)"}),
    "unknown_share": (float, {"description": "unknown_tokens / the input's tokens, in [0, 1]"}),
    "in_domain": (bool, {"description": "whether the input has the shape of the corpus the model was trained on"}),
    "confidence": (float, {"description": "the model's own probability for its output, in [0, 1]"}),
    "warning": (Optional[str], {"description": "why the output is unreliable; null when nothing is flagged"}),
}


@dataclass(frozen=True)
class Checked:
    """An application's output with the checks of its input (module docstring)."""
    text: str
    tokens: int
    unknown_tokens: int
    unknown_share: float
    in_domain: bool
    confidence: float
    warning: Optional[str]


@dataclass(frozen=True)
class CheckedAnswer(Checked):
    """:class:`Checked` with the answer's first and last piece in the context's pieces."""
    start: int
    end: int


def unknown_count(tok, *texts: str) -> tuple[int, int]:
    """``(unknown, total)``: the pieces of ``texts`` that ``tok`` encodes as ``<unk>``, of all."""
    ids = [i for t in texts for i in tok.encode(t)]
    return sum(i == tok.unk_id for i in ids), len(ids)


def warning_text(unknown: int, tokens: int, problem: Optional[str], output: str) -> Optional[str]:
    """``None`` when nothing is unknown and ``problem`` is ``None``; else e.g. "2 of 9
    tokens (22%) are unknown to this model and the question is not one of the forms
    it was trained on; the answer is unreliable" (``output`` = "answer")."""
    parts = []
    if unknown:
        parts.append(f"{unknown} of {tokens} tokens ({100 * unknown / tokens:.0f}%) are unknown to this model")
    if problem:
        parts.append(problem)
    return f"{' and '.join(parts)}; the {output} is unreliable" if parts else None


def checked_fields(tok, texts, problem: Optional[str], confidence: float, output: str) -> dict:
    """The keyword arguments of :class:`Checked` other than ``text`` for an input of ``texts``."""
    unknown, tokens = unknown_count(tok, *texts)
    return {"tokens": tokens, "unknown_tokens": unknown, "unknown_share": unknown / tokens if tokens else 0.0,
            "in_domain": problem is None, "confidence": float(confidence),
            "warning": warning_text(unknown, tokens, problem, output)}


def check_values(out: Checked) -> dict:
    """The :data:`CHECK_FIELDS` of a :class:`Checked`, for an endpoint's answer."""
    return {k: getattr(out, k) for k in CHECK_FIELDS}
