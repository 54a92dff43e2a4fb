# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 13. Instruction tuning: a chat template, the assistant's tokens, packing
#
# A pretrained model continues text; an assistant answers. Supervised instruction tuning
# (SFT) turns the one into the other by training on conversations, lists of
# `{"role", "content"}` messages (the format of `transformers`, `trl` and the OpenAI API),
# with three pieces this notebook takes one at a time:
#
# 1. a **chat template** renders a conversation as the text the model reads;
# 2. the loss counts only the **assistant's tokens**: the model is not taught to write the
#    user's questions, only to answer them;
# 3. conversations are short, so a batch either **pads** each to the longest, wasting
#    positions, or **packs** several into one row, with attention kept inside each.
#
# Then a short SFT of a small GPT on the embedded instruction set, and the parity check of
# the packed forward between the reference and torch.

# %%
from pathlib import Path

import numpy as np
import torch

import minillm
import minillm.reference as ref
import minillm.torch_backend as tb
from minillm.core.config import IGNORE_INDEX, ModelConfig
from minillm.data import instruction_set
from minillm.data.chat_batches import ConversationBatches, pad_conversations
from minillm.data.chat_template import DEFAULT_CHAT_TEMPLATE, apply_chat_template, render_chat
from minillm.data.conversations import encode_conversation, encode_conversations
from minillm.data.instructions import INSTRUCTION_TASKS
from minillm.notebook import assert_parity
from minillm.store.runtime import Runtime
from minillm.train import pipeline
from minillm.train.generation import generate

torch.set_num_threads(1)
rng = np.random.default_rng(0)

# %% [markdown]
# ## The embedded instruction set
#
# `instruction_set` builds conversations from the library's own seeded tasks, nothing
# downloaded: sentiment (notebook 7's set), dates to ISO 8601 (notebook 10's), extractive
# question answering (notebook 11's), and simple written instructions. It returns a
# training split and a held-out one whose requests never occur in training.

# %%
train_rows, held_out_rows = instruction_set(n_train=200, n_test=20, seed=0)
for task in INSTRUCTION_TASKS:
    row = next(r for r in train_rows if r["task"] == task)
    print(f"{task:14s}", row["messages"])
print(f"{len(train_rows)} training conversations, {len(held_out_rows)} held out")
assert {r["task"] for r in train_rows} == set(INSTRUCTION_TASKS)
assert all([m["role"] for m in r["messages"]] == ["user", "assistant"] for r in train_rows)
seen = {r["messages"][0]["content"] for r in train_rows}
assert not any(r["messages"][0]["content"] in seen for r in held_out_rows)   # held out means unseen

# %% [markdown]
# ## The chat template
#
# A Hugging Face model brings its own template (Jinja, in `tokenizer_config.json` or
# `chat_template.jinja`); minillm's tokenizers have none, and take `DEFAULT_CHAT_TEMPLATE`:
# the roles as plain words ("User:", "Assistant:"), spelled with tokens the pretrained
# model already knows rather than new token ids whose embeddings would start untrained, and
# each answer closed by `<eos>`, the token at which generation stops. The answer and its `<eos>`
# sit inside `{% generation %} ... {% endgeneration %}`, the markers `transformers` reads
# to give the assistant mask.

# %%
print(DEFAULT_CHAT_TEMPLATE)

# %%
conversation = [{"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": "Sentiment: the plot was not good."},
                {"role": "assistant", "content": "negative"}]
text, spans = render_chat(DEFAULT_CHAT_TEMPLATE, conversation, special_tokens={"eos_token": "<eos>"})
print(text)
assert text == "System: Answer briefly.\nUser: Sentiment: the plot was not good.\nAssistant:\nnegative<eos>\n"
assert [text[a:b] for a, b in spans] == ["negative<eos>"]           # what the generation block marks
prompt, _ = render_chat(DEFAULT_CHAT_TEMPLATE, conversation[:2], add_generation_prompt=True,
                        special_tokens={"eos_token": "<eos>"})
assert text.startswith(prompt) and prompt.endswith("Assistant:\n")  # generation starts where training's answer did

# %% [markdown]
# ## The assistant mask
#
# `apply_chat_template` renders, tokenizes, and marks each token whose characters overlap
# a generation block: `transformers`' `apply_chat_template(..., return_assistant_tokens_mask=True)`,
# which `tests/data/test_chat_template.py` checks it equals. SFT's targets are the next
# tokens where they are the assistant's, and `IGNORE_INDEX` (-100) everywhere else, so
# cross-entropy counts the answer and its `<eos>` only. The tokenizer is a BPE of 512
# tokens trained on the embedded corpus (Python's documentation).

# %%
tok = pipeline.train_tokenizer("bpe", pipeline.load_corpus("python_docs"), 512)
enc = apply_chat_template(tok, DEFAULT_CHAT_TEMPLATE, conversation)
print("|".join(f"[{tok.decode([i])}]" if m else tok.decode([i]) for i, m in zip(enc.ids, enc.assistant_mask)))
answer_ids = [i for i, m in zip(enc.ids, enc.assistant_mask) if m]
assert tok.decode(answer_ids) == "negative<eos>"                    # the mask spells the answer and its <eos>
assert enc.ids[-2:] == [answer_ids[-1], enc.ids[-1]] and answer_ids[-1] == tok.eos_id

ids, targets = encode_conversation(tok, DEFAULT_CHAT_TEMPLATE, conversation)
counted = targets != IGNORE_INDEX
print(f"{len(ids)} tokens, {counted.sum()} counted targets: {tok.decode(targets[counted].tolist())!r}")
assert np.array_equal(targets[counted], answer_ids)                # position t predicts token t + 1
assert np.array_equal(counted, np.asarray(enc.assistant_mask[1:], dtype=bool))

# %% [markdown]
# ## Padding against packing
#
# The conversations are short and of different lengths. Padded, each row holds one, filled
# with `IGNORE_INDEX` to the longest of the batch: positions computed for nothing. Packed,
# a row of `block_size` positions holds several one after another, and `segment_ids` say
# which token is whose. A packed row is only correct if each conversation is computed as
# if it were alone: the model must keep attention inside each segment (the causal mask
# AND $[s_i = s_j]$) and restart the positions at each segment's start. Both are asserted
# below by comparing logits.

# %%
block_size = 256
encoded = encode_conversations(tok, DEFAULT_CHAT_TEMPLATE, train_rows, block_size)
lengths = np.array([len(x) - 1 for x in encoded.ids])              # positions each takes
print(f"{len(encoded.ids)} conversations (dropped as longer than the block: {encoded.dropped}); "
      f"positions: {lengths.min()} to {lengths.max()}, mean {lengths.mean():.1f}")
padded = ConversationBatches(encoded.ids, encoded.targets, 16, block_size, tok.pad_id, seed=0)
packed = ConversationBatches(encoded.ids, encoded.targets, 4, block_size, tok.pad_id, seed=0, packing=True)


def padding_share(batches, n=20):
    pads = sum(((b["idx"] == tok.pad_id) & (b["targets"] == IGNORE_INDEX)).sum()
               for b in map(batches.batch, range(n)))
    return pads / sum(batches.batch(s)["idx"].size for s in range(n))


share_padded, share_packed = padding_share(padded), padding_share(packed)
print(f"share of padding positions: padded {share_padded:.1%}, packed {share_packed:.1%}")
assert share_packed < share_padded / 2        # 20 seeded batches of each: the figures printed above

# %%
b = packed.batch(0)
row_ids, row_seg = b["idx"][:1], b["segment_ids"][:1]
segments = np.unique(row_seg[0])
conversations = [k for k in segments if (row_ids[0, row_seg[0] == k] != tok.pad_id).any()]   # not the padding
print("the first packed row's segments, positions each:", np.bincount(row_seg[0]).tolist(),
      f"({len(conversations)} conversations, then {len(segments) - len(conversations)} of padding)")
tiny = ModelConfig(vocab_size=tok.vocab_size, block_size=block_size, d_model=32, n_heads=4, n_layers=2,
                   dtype="float64", dropout=0.0)
model = ref.GPT(tiny, seed=0)
packed_logits, _ = model(row_ids, segment_ids=row_seg)             # (1, T, V)
unpacked_logits, _ = model(row_ids)                                # the same row, no segments
worst_with, worst_without = 0.0, 0.0
for s in conversations:
    where = np.flatnonzero(row_seg[0] == s)
    alone, _ = model(row_ids[:, where])                            # the conversation by itself
    worst_with = max(worst_with, np.abs(packed_logits[0, where] - alone[0]).max())
    if s > 0:
        worst_without = max(worst_without, np.abs(unpacked_logits[0, where] - alone[0]).max())
print(f"largest |packed - alone| logit: with segment_ids {worst_with:.1e}, without {worst_without:.2f}")
assert worst_with < 1e-10          # float64: the same sums, masked entries exactly zero
assert worst_without > 1e-3        # without segments a conversation sees the ones before it

# %% [markdown]
# ## A short SFT
#
# A small GPT trained on the packed training conversations, the loss on the assistant's
# tokens only, with the torch backend's fast path. The validation loss, over the held-out
# conversations' assistant tokens (padded, one a row), must fall far below where it
# started. How well such a model answers after a few seconds of training from scratch is
# not the point here (the `sft` task, `minillm/apps/sft.py`, tunes a pretrained model the
# same way and scores its greedy answers); the cell shows a few greedy answers and asserts
# the loss only.

# %%
cfg = ModelConfig(vocab_size=tok.vocab_size, block_size=block_size, d_model=64, n_heads=4, n_layers=2, dropout=0.0)
held = encode_conversations(tok, DEFAULT_CHAT_TEMPLATE, held_out_rows, block_size)
val = pad_conversations(held.ids, held.targets, tok.pad_id)
gpt = tb.GPT(cfg, seed=0).set_fused(True)
opt = tb.AdamW(gpt.parameters(), lr=3e-3)


def validation_loss():
    with torch.no_grad():
        return gpt(torch.as_tensor(val["idx"]), torch.as_tensor(val["targets"]))[1].item()


start = validation_loss()
for step in range(150):
    bt = packed.batch(step)
    _, loss = gpt(*(torch.as_tensor(bt[k]) for k in ("idx", "targets")), segment_ids=torch.as_tensor(bt["segment_ids"]))
    loss.backward()
    opt.step()
    opt.zero_grad()
end = validation_loss()
print(f"held-out loss on the assistant's tokens: {start:.3f} at the start, {end:.3f} after 150 steps")
assert end < 0.5 * start

runtime = Runtime("torch")
gpt.eval()
for row in held_out_rows[:4]:
    prompt_ids = apply_chat_template(tok, DEFAULT_CHAT_TEMPLATE, row["messages"][:1], add_generation_prompt=True).ids
    new = generate(runtime, gpt, prompt_ids, 12, temperature=0.0, eos_id=tok.eos_id)
    print(f"{row['messages'][0]['content'][:60]!r:64s} -> {tok.decode(new, skip_special_tokens=True)!r} "
          f"(expected {row['messages'][1]['content']!r})")

# %% [markdown]
# ## Parity check: the packed forward in the reference and in torch
#
# One packed float64 batch through the same GPT in both backends: logits, the loss on the
# assistant's tokens and every gradient, on the torch explicit path and its fast path,
# within the float64 parity contract (rtol $10^{-7}$, atol $10^{-9}$, docs/architecture.md).

# %%
small = ModelConfig(vocab_size=tok.vocab_size, block_size=block_size, d_model=32, n_heads=4, n_layers=2,
                    dtype="float64", dropout=0.0, init_std=0.1)
b = packed.batch(1)
reference = ref.GPT(small, seed=1)
logits, loss = reference(b["idx"][:2], b["targets"][:2], segment_ids=b["segment_ids"][:2])
loss.backward()
for path, fused in (("explicit", False), ("fast", True)):
    model = tb.GPT(small, seed=1).set_fused(fused)
    t_logits, t_loss = model(*(torch.as_tensor(b[k][:2]) for k in ("idx", "targets")),
                             segment_ids=torch.as_tensor(b["segment_ids"][:2]))
    t_loss.backward()
    assert_parity(f"{path} logits", logits, t_logits, rtol=1e-7, atol=1e-9)
    assert_parity(f"{path} loss", np.array(float(loss)), np.array(t_loss.item()), rtol=1e-7, atol=1e-9)
    t_params = dict(model.named_parameters())
    for name, p in reference.named_parameters():
        np.testing.assert_allclose(p.grad, t_params[name].grad.numpy(), rtol=1e-7, atol=1e-9, err_msg=name)
    print(f"{path}: every one of {len(t_params)} gradients within rtol 1e-7, atol 1e-9")

# %%
import pytest

TESTS = Path(minillm.__file__).resolve().parents[1] / "tests"
if TESTS.is_dir():
    code = pytest.main(["-q", "--color=no", "-p", "no:cacheprovider", f"--rootdir={TESTS.parent}",
                        str(TESTS / "models" / "test_packing.py"), str(TESTS / "data" / "test_chat_template.py"),
                        "-k", "test_packing or default_template or mask_agree"])
    assert code == 0, f"packing's and the chat template's tests failed (pytest exit code {code})"
else:
    print("no tests/ folder next to minillm (installed from a wheel): the check above is the parity check")
