"""Conversations for instruction tuning (SFT, issue 26): read from JSONL, checked, and
encoded with a chat template into token ids and next-token targets counted only on what
the assistant writes.

A file holds one conversation a line, the format of ``transformers``, ``trl`` and the
OpenAI API, with an optional task name (the embedded set's, :mod:`.instructions`)::

    {"messages": [{"role": "user", "content": "Sentiment: the plot was good."},
                  {"role": "assistant", "content": "positive"}], "task": "sentiment"}

Roles are ``system``, ``user`` and ``assistant``; a conversation needs an assistant turn,
and no assistant turn may be empty (it would teach the model to stop at once). A line that
breaks a rule is an error naming the file, the line and what was expected; nothing is
trained from a file with one.

The long-conversation rule: a conversation of more than ``block_size + 1`` tokens (the
model reads ``block_size`` positions, each predicting the next token) is dropped, and the
count dropped is said; it is never cut, since a cut conversation loses the end of an
answer, its ``<eos>`` included, and would teach the model not to stop.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..core.config import IGNORE_INDEX
from .chat_template import apply_chat_template

__all__ = ["ROLES", "LONG_CONVERSATIONS", "check_conversation", "read_conversations", "encode_conversation",
           "encode_conversations", "EncodedConversations"]

logger = logging.getLogger("minillm")

ROLES = ("system", "user", "assistant")
DEFAULT_TASK = "conversation"          # the task of a row that names none
LONG_CONVERSATIONS = ("a conversation of more than block_size + 1 tokens is dropped and the count dropped is "
                      "said; never cut, since a cut loses the end of an answer and its <eos>")


def check_conversation(row, where: str) -> dict:
    """``row`` as ``{"task", "messages"}`` (task default ``"conversation"``), or a
    ``ValueError`` that starts with ``where`` (``"data.jsonl line 3"``) and names what
    was expected: a JSON object with ``messages``, a list of ``{"role", "content"}`` with
    a known role and string content, at least one assistant turn, none empty."""
    if not isinstance(row, dict) or "messages" not in row:
        got = f"keys {sorted(row)}" if isinstance(row, dict) else type(row).__name__
        raise ValueError(f'{where}: expected an object with "messages" (a list of {{"role", "content"}}), got {got}')
    messages, task = row["messages"], row.get("task", DEFAULT_TASK)
    if not isinstance(task, str) or not task:
        raise ValueError(f'{where}: expected "task" a non-empty string, got {task!r}')
    if not isinstance(messages, list) or not messages:
        raise ValueError(f'{where}: expected "messages" a non-empty list, got {messages!r}')
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str) or "role" not in m:
            raise ValueError(f'{where}: message {i}: expected {{"role", "content"}} with string content, got {m!r}')
        if m["role"] not in ROLES:
            raise ValueError(f"{where}: message {i}: expected a role in {list(ROLES)}, got {m['role']!r}")
        if m["role"] == "assistant" and not m["content"].strip():
            raise ValueError(f"{where}: message {i}: expected an assistant turn with text, got an empty one "
                             f"({m['content']!r})")
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError(f"{where}: expected at least one assistant turn (the loss is on the assistant's tokens), "
                         f"got roles {[m['role'] for m in messages]}")
    return {"task": task, "messages": [{"role": m["role"], "content": m["content"]} for m in messages]}


def read_conversations(path: str | os.PathLike) -> list[dict]:
    """The conversations of a JSONL file (module docstring), each checked
    (:func:`check_conversation`); blank lines are skipped; a file with none is an error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected JSONL, one conversation a line)")
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}, line {n}: expected a JSON object, got text that is not JSON ({e.msg})") \
                    from None
            rows.append(check_conversation(row, f"{path}, line {n}"))
    if not rows:
        raise ValueError(f"{path}: expected at least one conversation, the file has none")
    return rows


def encode_conversation(tokenizer, template: str, messages) -> tuple[np.ndarray, np.ndarray]:
    r"""``(ids (n,), targets (n - 1,))`` of one conversation rendered with ``template``: the
    model reads ``ids[:-1]`` and position :math:`t` predicts ``ids[t + 1]``, counted only
    where that token is the assistant's (the template's ``{% generation %}`` blocks), the
    rest ``IGNORE_INDEX``."""
    enc = apply_chat_template(tokenizer, template, messages)
    ids = np.asarray(enc.ids, dtype=np.int64)                                 # (n,)
    mask = np.asarray(enc.assistant_mask, dtype=bool)                         # (n,)
    if not mask.any():
        raise ValueError("the template marks no assistant token ({% generation %} blocks): expected a template "
                         "with generation markers, such as DEFAULT_CHAT_TEMPLATE")
    targets = np.where(mask[1:], ids[1:], IGNORE_INDEX)                       # (n - 1,)
    return ids, targets


class EncodedConversations(NamedTuple):
    """Encoded conversations: ``ids`` and ``targets`` (lists of arrays, as
    :func:`encode_conversation`), each one's ``task``, and how many were ``dropped`` by the
    long-conversation rule (:data:`LONG_CONVERSATIONS`)."""

    ids: list
    targets: list
    tasks: list
    dropped: int


def encode_conversations(tokenizer, template: str, rows, block_size: int, what: str = "conversations"
                         ) -> EncodedConversations:
    """Every row of ``rows`` (``{"task", "messages"}``) encoded, those longer than
    ``block_size + 1`` tokens dropped and counted (a warning says how many of ``what``);
    none left is an error."""
    ids, targets, tasks, dropped = [], [], [], 0
    for row in rows:
        x, y = encode_conversation(tokenizer, template, row["messages"])
        if len(x) > block_size + 1:
            dropped += 1
            continue
        ids.append(x)
        targets.append(y)
        tasks.append(row["task"])
    if dropped:
        logger.warning("%d of %d %s have more than block_size + 1 = %d tokens and are dropped (%s)",
                       dropped, len(rows), what, block_size + 1, LONG_CONVERSATIONS)
    if not ids:
        raise ValueError(f"every one of the {len(rows)} {what} has more than block_size + 1 = {block_size + 1} "
                         "tokens: expected a model with a longer window, or shorter conversations")
    return EncodedConversations(ids, targets, tasks, dropped)
