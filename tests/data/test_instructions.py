"""The embedded instruction set (issue 26.4): its rows, its split, its JSONL."""
import json
import re

import pytest

from minillm.data.instructions import (HELD_OUT_POOL, INSTRUCTION_TASKS, instruction_set, training_requests,
                                      write_jsonl)
from minillm.train.pipeline import load_corpus


@pytest.fixture(scope="module")
def rows():
    return instruction_set(40, 10, seed=3)


def test_rows_are_conversations_of_each_task_in_turn(rows):
    train, held_out = rows
    assert len(train) == 40 * len(INSTRUCTION_TASKS) and len(held_out) == 10 * len(INSTRUCTION_TASKS)
    assert [r["task"] for r in train[:8]] == list(INSTRUCTION_TASKS) * 2
    for row in train + held_out:
        assert set(row) == {"task", "messages"}
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
        assert all(isinstance(m["content"], str) and m["content"] for m in row["messages"])


def test_held_out_requests_never_occur_in_training(rows):
    train, held_out = rows
    seen = {r["messages"][0]["content"] for r in train}
    assert not [r for r in held_out if r["messages"][0]["content"] in seen]


def _clauses(row):
    return frozenset(row["messages"][0]["content"].removeprefix("Sentiment: ").rstrip(".").split(", but "))


def test_held_out_rows_do_not_depend_on_n_train_and_never_train_at_any_size():
    held = instruction_set(40, 10, seed=3)[1]
    assert instruction_set(7, 10, seed=3)[1] == held
    assert instruction_set(90, 4, seed=3)[1] == [r for r in held if held.index(r) < 4 * len(INSTRUCTION_TASKS)]
    pool = {r["messages"][0]["content"] for r in instruction_set(1, HELD_OUT_POOL, seed=3)[1]}
    mirrors = {_clauses(r) for r in instruction_set(1, HELD_OUT_POOL, seed=3)[1] if r["task"] == "sentiment"}
    for n_train in (5, 300):
        train = instruction_set(n_train, 1, seed=3)[0]
        assert not [r for r in train if r["messages"][0]["content"] in pool]
        # a contrast sentence's mirror ("X, but Y." for a held-out "Y, but X.") never trains either
        assert not [r for r in train if r["task"] == "sentiment" and _clauses(r) in mirrors]


def test_the_held_out_pool_is_bounded():
    with pytest.raises(ValueError, match=f"n_test must be at most {HELD_OUT_POOL}"):
        instruction_set(1, HELD_OUT_POOL + 1)


def test_the_sft_pretraining_corpus_holds_the_training_requests_and_no_held_out_one():
    text = load_corpus("python_docs+requests")
    lines = set(training_requests().splitlines())
    assert text.endswith(training_requests()) and len(lines) > 3 * len(INSTRUCTION_TASKS) * 900
    train, held_out = instruction_set(n_test=HELD_OUT_POOL)
    assert {r["messages"][0]["content"] for r in train} == lines
    assert not [r for r in held_out if r["messages"][0]["content"] in lines]


def test_deterministic_and_seeded(rows):
    assert instruction_set(40, 10, seed=3) == rows
    assert instruction_set(40, 10, seed=4) != rows
    # one size changes no row of a smaller set's tasks other than by extending them
    bigger = instruction_set(41, 10, seed=3)[0]
    assert [r for r in bigger if r["task"] == "instruction"][:40] == [r for r in rows[0] if r["task"] == "instruction"]


def _expected(task, user):
    """The answer each task's request asks for, worked out from the request itself."""
    if task == "iso_date":
        return None                                            # checked by its form below
    if task == "instruction":
        verb, words = user.split(": ", 1)
        words = words.split()
        if verb.startswith("Repeat"):
            k = ("two", "three", "four").index(verb.split()[1]) + 2
            return " ".join(words * k)
        return {"Upper-case": " ".join(words).upper(), "Reverse": " ".join(reversed(words)),
                "Count the words": str(len(words))}[verb]
    return None


def test_answers_are_what_the_requests_ask(rows):
    for row in rows[0] + rows[1]:
        user, answer = (m["content"] for m in row["messages"])
        if row["task"] == "sentiment":
            assert user.startswith("Sentiment: ") and answer in ("positive", "negative")
        elif row["task"] == "iso_date":
            assert user.startswith("ISO date: ") and re.fullmatch(r"(19|20)\d\d-\d\d-\d\d", answer)
        elif row["task"] == "extractive_qa":
            context = user.rsplit(" . ", 1)[0]
            assert f" {answer} ." in f" {context} ."                  # a span of the context
        else:
            assert answer == _expected(row["task"], user), user


def test_both_sentiment_labels_occur(rows):
    answers = {r["messages"][1]["content"] for r in rows[0] if r["task"] == "sentiment"}
    assert answers == {"positive", "negative"}


def test_sizes_refused():
    with pytest.raises(ValueError, match="n_train"):
        instruction_set(0, 1)


def test_write_jsonl(rows, tmp_path):
    path = write_jsonl(rows[1], tmp_path / "held_out.jsonl")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == rows[1]
    assert [p.name for p in tmp_path.iterdir()] == ["held_out.jsonl"]      # no temp file left
