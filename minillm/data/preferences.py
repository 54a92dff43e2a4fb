"""Preference pairs for DPO (issue 26): read from JSONL in ``trl``'s format, or built from
the embedded instruction set, and encoded for a causal LM.

A pair is ``{"prompt", "chosen", "rejected"}`` (``trl``'s preference format), either

- strings: the prompt's text and the two completions' texts, or
- conversational: ``prompt`` a list of ``{"role", "content"}`` messages (system, user,
  assistant), ``chosen`` and ``rejected`` each a list of ONE assistant message.

:func:`preference_set` builds pairs from :func:`~minillm.data.instructions.instruction_set`,
row for row: the prompt is the conversation before the answer, ``chosen`` the right
answer, ``rejected`` a plausibly wrong one, the answer of another row of the same task
(another label, date, span or word list; the answer said twice where its task has no
other), drawn from a seeded generator. Its held-out
pairs are the instruction set's held-out rows, so SFT's and DPO's exact match are scored
on the same questions.

:func:`encode_pair` renders a pair with the model's chat template (the prompt with
``add_generation_prompt=True``; the completion is what the whole conversation adds to it,
its counted tokens the assistant's, as SFT counts them) or, without a template, as the
prompt's text followed by the completion's. Nothing here needs an array library beyond
NumPy.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..core.config import IGNORE_INDEX
from .chat_template import apply_chat_template
from .instructions import instruction_set

__all__ = ["TooLong", "read_preferences", "check_pair", "preference_set", "encode_pair", "EncodedPair", "PREFERENCE_FIELDS"]

PREFERENCE_FIELDS = ("prompt", "chosen", "rejected")
ROLES = ("system", "user", "assistant")


def _check_messages(messages, what: str, where: str) -> None:
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"{where}: expected {what} as a non-empty list of {{\"role\", \"content\"}} messages, "
                         f"got {messages!r}"[:300])
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str) or m.get("role") not in ROLES:
            raise ValueError(f"{where}: {what}[{i}]: expected a message {{\"role\": one of {list(ROLES)}, "
                             f"\"content\": a string}}, got {m!r}"[:300])


def check_pair(pair, where: str) -> dict:
    """``pair`` checked (``where`` names it in errors: a file's line): the three fields,
    strings all or messages all (a conversational ``chosen`` / ``rejected`` is one assistant
    message with content), neither completion empty, and ``chosen != rejected``."""
    if not isinstance(pair, dict):
        raise ValueError(f"{where}: expected a JSON object with {list(PREFERENCE_FIELDS)}, got {type(pair).__name__}")
    missing = [k for k in PREFERENCE_FIELDS if k not in pair]
    if missing:
        raise ValueError(f"{where}: expected the fields {list(PREFERENCE_FIELDS)}, missing {missing} "
                         f"(got {sorted(pair)})")
    prompt, chosen, rejected = (pair[k] for k in PREFERENCE_FIELDS)
    if all(isinstance(x, str) for x in (prompt, chosen, rejected)):
        completions = (chosen, rejected)
    elif isinstance(prompt, list):
        _check_messages(prompt, "prompt", where)
        for name, c in (("chosen", chosen), ("rejected", rejected)):
            _check_messages(c, name, where)
            if len(c) != 1 or c[0]["role"] != "assistant":
                raise ValueError(f"{where}: expected {name} as one assistant message, got "
                                 f"{[m['role'] for m in c]}")
        completions = (chosen[0]["content"], rejected[0]["content"])
    else:
        raise ValueError(f"{where}: expected prompt, chosen and rejected as strings, or prompt as a list of "
                         f"messages and chosen / rejected as one assistant message each; got "
                         f"{', '.join(type(x).__name__ for x in (prompt, chosen, rejected))}")
    if not all(c.strip() for c in completions):
        raise ValueError(f"{where}: expected non-empty chosen and rejected completions, got {list(completions)!r}")
    if completions[0] == completions[1]:
        raise ValueError(f"{where}: chosen and rejected are equal ({completions[0]!r}): a pair must prefer one "
                         f"answer over a different one")
    return pair


def read_preferences(path) -> list[dict]:
    """The pairs of a JSONL file (one JSON object a line, blank lines skipped), each
    checked by :func:`check_pair` and given its ``line`` (so that a later error, a pair
    too long for the model, names it too); an error names the file and line."""
    path = Path(path)
    if path.suffix != ".jsonl":
        raise ValueError(f"{path}: expected 'preferences' (the embedded set) or a .jsonl file of "
                         f"{{\"prompt\", \"chosen\", \"rejected\"}} lines, got suffix {path.suffix!r}")
    pairs = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}, line {n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: not JSON ({exc.msg})") from None
            pairs.append({**check_pair(row, where), "line": n})
    if len(pairs) < 2:
        raise ValueError(f"{path}: expected at least 2 pairs (one to train on, one held out), got {len(pairs)}")
    return pairs


def _pairs(rows: list, answers: dict, seed: int) -> list[dict]:
    """Each instruction row as a pair: rejected = the answer of another row of its task
    (``answers``: every answer of each task), or, where the task has no other, the right
    answer said twice."""
    rng = np.random.default_rng(seed)
    pairs = []
    for row in rows:
        right = row["messages"][-1]["content"]
        others = sorted(set(answers[row["task"]]) - {right})
        wrong = str(rng.choice(others)) if others else f"{right} {right}"
        pairs.append({"task": row["task"], "prompt": row["messages"][:-1],
                      "chosen": [{"role": "assistant", "content": right}],
                      "rejected": [{"role": "assistant", "content": wrong}]})
    return pairs


def preference_set(n_train: int = 600, n_test: int = 50, *, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """``(train, held_out)`` pairs: :func:`~minillm.data.instructions.instruction_set`'s rows
    of the same sizes and seed, each with a plausibly wrong answer to reject (module
    docstring). Conversational, with the row's ``task``."""
    train, test = instruction_set(n_train, n_test, seed=seed)
    answers: dict = {}
    for row in train + test:
        answers.setdefault(row["task"], []).append(row["messages"][-1]["content"])
    return _pairs(train, answers, seed), _pairs(test, answers, seed + 1)


class TooLong(ValueError):
    """A pair longer than the model's window (:func:`encode_pair`)."""


class EncodedPair(NamedTuple):
    """A pair as two causal-LM rows: ``idx`` the tokens but the last, ``targets`` the
    next tokens with ``-100`` off the completion (chosen first, then rejected)."""

    chosen_idx: list
    chosen_targets: list
    rejected_idx: list
    rejected_targets: list


def _row(ids: list, counted: list) -> tuple[list, list]:
    """Inputs and next-token targets of ``ids``; a target counts where ``counted`` says."""
    return ids[:-1], [t if c else IGNORE_INDEX for t, c in zip(ids[1:], counted[1:])]


def _conversation(pair) -> tuple[list, list, list]:
    if isinstance(pair["prompt"], str):
        return ([{"role": "user", "content": pair["prompt"]}], [{"role": "assistant", "content": pair["chosen"]}],
                [{"role": "assistant", "content": pair["rejected"]}])
    return pair["prompt"], pair["chosen"], pair["rejected"]


def encode_pair(tok, template: str | None, pair: dict, block_size: int, where: str) -> EncodedPair:
    """The two rows of ``pair`` (:class:`EncodedPair`). With a ``template``: the prompt
    rendered with ``add_generation_prompt=True`` (a string prompt is one user message), the
    counted tokens those of the assistant's answer that follow it in the whole conversation
    (the template's assistant mask; every token after the prompt for a template without
    ``{% generation %}`` marks). Without: ``encode(prompt)`` then ``encode(completion)``,
    the latter counted (a conversational pair needs a template). A row longer than
    ``block_size`` + 1 tokens is an error naming ``where`` and the lengths."""
    rows = []
    if template is None:
        if not isinstance(pair["prompt"], str):
            raise ValueError(f"{where}: a conversational pair needs the model's chat template, and the run has "
                             f"none; give prompt, chosen and rejected as strings, or tune from an sft run")
        prompt = tok.encode(pair["prompt"])
        for completion in (pair["chosen"], pair["rejected"]):
            ids = prompt + tok.encode(completion)
            rows.append((ids, [0] * len(prompt) + [1] * (len(ids) - len(prompt))))
    else:
        prompt_messages, chosen, rejected = _conversation(pair)
        prompt = apply_chat_template(tok, template, prompt_messages, add_generation_prompt=True).ids
        for completion in (chosen, rejected):
            whole = apply_chat_template(tok, template, prompt_messages + completion)
            if list(whole.ids[:len(prompt)]) != list(prompt):
                raise ValueError(f"{where}: the chat template's prompt is not where the whole conversation starts "
                                 f"(a template that renders the prompt differently once answered)")
            # the assistant's tokens after the prompt; a template without {% generation %}
            # marks none, and then every token after the prompt counts (trl's rule)
            after = list(whole.assistant_mask[len(prompt):]) if any(whole.assistant_mask) \
                else [1] * (len(whole.ids) - len(prompt))
            rows.append((list(whole.ids), [0] * len(prompt) + after))
    for (ids, counted), name in zip(rows, ("chosen", "rejected")):
        if not any(counted[1:]):
            raise ValueError(f"{where}: the {name} completion has no token to score")
        if len(ids) > block_size + 1:
            raise TooLong(f"{where}: the prompt with its {name} completion is {len(ids)} tokens, more than the "
                             f"model's block_size + 1 = {block_size + 1}; shorten it or leave the pair out")
    (ci, ct), (ri, rt) = (_row(ids, counted) for ids, counted in rows)
    return EncodedPair(ci, ct, ri, rt)
