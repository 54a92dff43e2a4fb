"""An embedded, seeded set of extractive question-answering examples.

Each context states a few facts about two or three people, in random order; the
question asks for one fact about one of them, and the answer is a span of the context
(chapter section 6.3 names question answering as an application)::

    context:  "dana was born in 1987 . omar lives in lisbon . dana has a grey cat ."
    question: "where does omar live ?"
    answer:   "lisbon"            (answer_start = 9: the index of its first piece)

Finding the span needs the question's person AND relation to be matched in the
context, since the same relation appears for other people and the same person has
other facts. Answers are one piece (a city, a job), two (a colour and an animal) or
four (a year's digits). Pieces are those of :class:`~minillm.data.parallel.PieceTokenizer`.
"""
from __future__ import annotations

import numpy as np

from ..core._validate import require_int_at_least
from .parallel import PieceTokenizer, _joined, template_pattern

__all__ = ["qa_corpus", "has_distractor", "qa_format_problem"]

NAMES = ("alice", "bruno", "chen", "dana", "emeka", "fatima", "goran", "hana", "ivan", "julia",
         "kofi", "lena", "mateo", "nadia", "omar", "priya", "quinn", "rosa", "sven", "tomas")
CITIES = ("paris", "lisbon", "oslo", "cairo", "lima", "seoul", "quito", "dublin", "nairobi",
          "hanoi", "vienna", "bogota", "madrid", "tokyo")
JOBS = ("baker", "nurse", "pilot", "farmer", "teacher", "lawyer", "painter", "plumber", "chef",
        "doctor", "tailor", "miner")
COLOURS = ("red", "blue", "grey", "black", "white", "brown", "green")
ANIMALS = ("cat", "dog", "horse", "parrot", "rabbit", "goat")
BORN = range(1940, 2010)
PEOPLE_PER_CONTEXT = (2, 3)          # inclusive bounds
FACTS_PER_CONTEXT = (3, 5)

# relation -> (fact template, question template, how to draw the answer)
RELATIONS = {
    "city": ("{n} lives in {a} .", "where does {n} live ?", lambda r: str(r.choice(CITIES))),
    "job": ("{n} works as a {a} .", "what is the job of {n} ?", lambda r: str(r.choice(JOBS))),
    "pet": ("{n} has a {a} .", "what pet does {n} have ?",
            lambda r: f"{r.choice(COLOURS)} {r.choice(ANIMALS)}"),
    "born": ("{n} was born in {a} .", "when was {n} born ?", lambda r: str(int(r.integers(BORN.start, BORN.stop)))),
}
# relation -> every answer its draw can give
ANSWERS = {"city": CITIES, "job": JOBS, "pet": tuple(f"{c} {a}" for c in COLOURS for a in ANIMALS),
           "born": tuple(str(y) for y in BORN)}


def _example(rng):
    n_people = int(rng.integers(PEOPLE_PER_CONTEXT[0], PEOPLE_PER_CONTEXT[1] + 1))
    people = [str(p) for p in rng.choice(NAMES, size=n_people, replace=False)]
    facts = [(p, rel) for p in people for rel in RELATIONS]
    n_facts = int(rng.integers(FACTS_PER_CONTEXT[0], FACTS_PER_CONTEXT[1] + 1))
    chosen = [facts[i] for i in rng.choice(len(facts), size=n_facts, replace=False)]
    answers = {fact: RELATIONS[fact[1]][2](rng) for fact in chosen}
    asked = chosen[int(rng.integers(len(chosen)))]
    pieces, sentences, start = [], [], None
    for fact in chosen:
        template = RELATIONS[fact[1]][0]
        before = template.split("{a}")[0].format(n=fact[0])
        if fact == asked:
            start = len(pieces) + len(PieceTokenizer.pieces(before))
        sentences.append(template.format(n=fact[0], a=answers[fact]))
        pieces += PieceTokenizer.pieces(sentences[-1])
    context = " ".join(sentences)
    return {"context": context, "question": RELATIONS[asked[1]][1].format(n=asked[0]),
            "answer": answers[asked], "answer_start": start}


def qa_corpus(n_train: int = 4000, n_test: int = 400, seed: int = 0):
    """``(train, test)``: lists of dicts with ``context``, ``question``, ``answer`` and
    ``answer_start`` (the index of the answer's first piece in the context's pieces).

    Drawn from ``numpy.random.default_rng(seed)``; no test (context, question) pair
    occurs in the training split. Raises ``ValueError`` for sizes below 1.
    """
    require_int_at_least("n_train", n_train, 1)
    require_int_at_least("n_test", n_test, 1)
    rng = np.random.default_rng(seed)
    seen, out = set(), []
    while len(out) < n_train + n_test:
        ex = _example(rng)
        key = (ex["context"], ex["question"])
        if key not in seen:
            seen.add(key)
            out.append(ex)
    return out[:n_train], out[n_train:]


def has_distractor(example: dict) -> bool:
    """Whether the context states the asked relation for another person too ("dana lives
    in paris . omar lives in lisbon ." asked "where does omar live ?"): the questions
    that need the asked name matched with a fact's subject, about half of them.
    Raises ``ValueError`` for a question that is none of this corpus's templates."""
    for fact, question, _ in RELATIONS.values():
        before, after = question.split("{n}")
        if example["question"].startswith(before) and example["question"].endswith(after):
            verb = fact.split("{n}")[1].split("{a}")[0]                  # " lives in "
            return example["context"].count(verb) > 1
    raise ValueError(f"expected a question of minillm.data.qa's templates, got {example['question']!r}")


_QA_CHECK = None


def _qa_check():
    """(relation -> question pattern, relation -> fact pattern), built once from RELATIONS."""
    global _QA_CHECK
    if _QA_CHECK is None:
        _QA_CHECK = ({rel: template_pattern(q, {"n": NAMES}) for rel, (_, q, _) in RELATIONS.items()},
                     {rel: template_pattern(f, {"n": NAMES, "a": ANSWERS[rel]})
                      for rel, (f, _, _) in RELATIONS.items()})
    return _QA_CHECK


def qa_format_problem(context: str, question: str) -> str | None:
    """``None`` when (``context``, ``question``) has the shape of :func:`qa_corpus`'s
    examples, else what differs, as a phrase for a warning. Compared piece by piece
    (case and spacing free), against the generator's own templates and word lists:
    the question is one of :data:`RELATIONS`' questions about a name of :data:`NAMES`;
    the context is sentences of :data:`RELATIONS`' facts, each with a name and an
    answer the corpus draws (:data:`ANSWERS`), stating distinct facts, one of them what
    is asked, no more facts and people than the corpus draws (``FACTS_PER_CONTEXT[1]``,
    ``PEOPLE_PER_CONTEXT[1]``). Fewer are accepted: a context of one or two facts is a
    part of a drawn one (and a drawn person may get no fact)."""
    questions, facts = _qa_check()
    problems = []
    joined = _joined(question)
    asked = next(((m.group("n"), rel) for rel, p in questions.items() if (m := p.fullmatch(joined))), None)
    if asked is None:
        problems.append("the question is not one of the forms it was trained on")
    sentences, stated = _joined(context).replace(" . ", " .\n").split("\n"), []
    for sentence in sentences:
        fact = next(((m.group("n"), rel) for rel, p in facts.items() if (m := p.fullmatch(sentence))), None)
        if fact is None:
            problems.append("the context's sentences are not of the forms it was trained on")
            break
        stated.append(fact)
    else:
        n_people = len({name for name, _ in stated})
        if (len(set(stated)) < len(stated) or len(stated) > FACTS_PER_CONTEXT[1]
                or n_people > PEOPLE_PER_CONTEXT[1]):
            problems.append(f"the context is not at most {FACTS_PER_CONTEXT[1]} distinct facts about at most "
                            f"{PEOPLE_PER_CONTEXT[1]} people as in training")
        elif asked is not None and asked not in stated:
            problems.append("the context does not state what the question asks")
    return " and ".join(problems) or None
