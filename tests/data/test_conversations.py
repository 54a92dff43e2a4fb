"""Conversations read from JSONL, checked, encoded with the answers' mask, and batched
padded or packed (issue 26.1)."""
import json

import numpy as np
import pytest

from minillm.core.config import IGNORE_INDEX
from minillm.data import CharTokenizer
from minillm.data.chat_batches import ConversationBatches, conversation_eval_batches, pad_conversations
from minillm.data.chat_template import DEFAULT_CHAT_TEMPLATE
from minillm.data.conversations import (encode_conversation, encode_conversations, read_conversations)

pytest.importorskip("jinja2")

CHAT = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"},
                     {"role": "assistant", "content": "Hello."}]}


@pytest.fixture(scope="module")
def tok():
    return CharTokenizer.train("System: User: Assistant:\nabcdefghijklmnopqrstuvwxyz?. HBe")


def _write(tmp_path, lines):
    path = tmp_path / "chats.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_read_keeps_task_and_messages(tmp_path):
    path = _write(tmp_path, [json.dumps(CHAT), "", json.dumps({**CHAT, "task": "greet"})])
    rows = read_conversations(path)
    assert [r["task"] for r in rows] == ["conversation", "greet"]
    assert rows[0]["messages"] == CHAT["messages"]


@pytest.mark.parametrize("line, message", [
    ("not json", r"line 2: expected a JSON object, got text that is not JSON"),
    ('{"prompt": "x"}', r'line 2: expected an object with "messages" .* got keys \[\'prompt\'\]'),
    ('{"messages": [{"role": "robot", "content": "x"}]}',
     r"line 2: message 0: expected a role in \['system', 'user', 'assistant'\], got 'robot'"),
    ('{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "  "}]}',
     r"line 2: message 1: expected an assistant turn with text, got an empty one"),
    ('{"messages": [{"role": "user", "content": "x"}]}', r"line 2: expected at least one assistant turn"),
    ('{"messages": [{"role": "user", "content": 3}]}', r"line 2: message 0: expected \{\"role\", \"content\"\}"),
])
def test_bad_lines_are_named(tmp_path, line, message):
    with pytest.raises(ValueError, match=message):
        read_conversations(_write(tmp_path, [json.dumps(CHAT), line]))


def test_empty_file_refused(tmp_path):
    with pytest.raises(ValueError, match="expected at least one conversation"):
        read_conversations(_write(tmp_path, [""]))


def test_targets_are_the_answers_next_tokens(tok):
    ids, targets = encode_conversation(tok, DEFAULT_CHAT_TEMPLATE, CHAT["messages"])
    assert targets.shape == (len(ids) - 1,)
    counted = targets != IGNORE_INDEX
    assert tok.decode(targets[counted]) == "Hello.<eos>"           # the answer and its stop, nothing else
    np.testing.assert_array_equal(targets[counted], ids[1:][counted])


def test_long_conversations_dropped_and_counted(tok, caplog):
    rows = [{"task": "t", **CHAT}, {"task": "t", "messages": [{"role": "user", "content": "a" * 80},
                                                               {"role": "assistant", "content": "b"}]}]
    n = len(encode_conversation(tok, DEFAULT_CHAT_TEMPLATE, CHAT["messages"])[0])
    out = encode_conversations(tok, DEFAULT_CHAT_TEMPLATE, rows, block_size=n - 1)
    assert out.dropped == 1 and len(out.ids) == 1
    assert "1 of 2 conversations have more than block_size + 1" in caplog.text
    with pytest.raises(ValueError, match="every one of the 2 conversations"):
        encode_conversations(tok, DEFAULT_CHAT_TEMPLATE, rows, block_size=n - 2)


def _encoded(tok, n=6):
    rows = [{"task": "t", "messages": [{"role": "user", "content": "ab" * (i + 1)},
                                      {"role": "assistant", "content": "c" * (i % 3 + 1)}]} for i in range(n)]
    return encode_conversations(tok, DEFAULT_CHAT_TEMPLATE, rows, block_size=48)


def test_packed_rows_hold_whole_conversations(tok):
    enc = _encoded(tok)
    data = ConversationBatches(enc.ids, enc.targets, 3, 48, tok.pad_id, seed=1, packing=True)
    batch = data.batch(0)
    assert batch["idx"].shape == (3, 48) and batch["segment_ids"].shape == (3, 48)
    wholes = {tuple(x[:-1]) for x in enc.ids}
    for b in range(3):
        seg = batch["segment_ids"][b]
        assert (np.diff(seg) >= 0).all()
        pieces = [batch["idx"][b][seg == k] for k in np.unique(seg)]
        assert all(tuple(p) in wholes for p in pieces[:-1])        # each a whole conversation
        last = pieces[-1]
        assert tuple(last) in wholes or (last == tok.pad_id).all()  # or the row's padding
    assert all((batch[k] == data.batch(0)[k]).all() for k in batch)    # a pure function of the step
    assert (batch["idx"] != data.batch(1)["idx"]).any()
    # the two ranks' parts are the single process's batch
    parts = [ConversationBatches(enc.ids, enc.targets, 3, 48, tok.pad_id, seed=1, packing=True, rank=r,
                                 world_size=2).batch(0) for r in (0, 1)]
    whole = ConversationBatches(enc.ids, enc.targets, 6, 48, tok.pad_id, seed=1, packing=True).batch(0)
    np.testing.assert_array_equal(np.concatenate([p["idx"] for p in parts]), whole["idx"])


def test_padded_batches(tok):
    enc = _encoded(tok)
    batch = pad_conversations(enc.ids[:2], enc.targets[:2], tok.pad_id)
    assert batch["idx"].shape[1] == max(len(x) for x in enc.ids[:2]) - 1
    np.testing.assert_array_equal(batch["idx"][0, :len(enc.ids[0]) - 1], enc.ids[0][:-1])
    assert (batch["targets"][0, len(enc.targets[0]):] == IGNORE_INDEX).all()
    assert sum(len(b["idx"]) for b in conversation_eval_batches(enc.ids, enc.targets, 4, tok.pad_id)) == 6
    with pytest.raises(ValueError, match="at most block_size \\+ 1"):
        ConversationBatches(enc.ids, enc.targets, 2, 8, tok.pad_id)
