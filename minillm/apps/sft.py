"""The ``sft`` task (issue 26.1): a pretrained causal LM tuned on conversations, the loss
only on what the assistant writes.

- the model: a run folder's GPT (a ``causal_lm`` run, or an ``sft`` run to tune again:
  weights, tokenizer, config) or a Hugging Face folder's decoder (``load_hf``'s reading:
  GPT-2, Llama, Qwen), with its tokenizer; the new run starts from those weights;
- the template: the source's own (an ``sft`` run's, a folder's ``chat_template``), else
  :data:`~minillm.data.chat_template.DEFAULT_CHAT_TEMPLATE`; it is recorded with the
  run's tokenizer, so ``load_run(...).tokenizer.chat_template`` gives it back;
- the data: the embedded instruction set (:func:`~minillm.data.instructions.instruction_set`,
  ``data=None``) or conversations given (``{"task", "messages"}`` rows, e.g. from
  :func:`~minillm.data.conversations.read_conversations`), of which a seeded share is held
  out; conversations longer than the window are dropped and counted
  (:data:`~minillm.data.conversations.LONG_CONVERSATIONS`);
- the batches: packed by default (several conversations a row, attention kept inside each),
  or padded (:mod:`minillm.data.chat_batches`);
- the scores: validation loss on the answers of a seeded 5% of the training rows
  (:data:`VALIDATION_SHARE`: it chooses ``checkpoints/best``, so it is never the held-out
  rows); at the end and in ``minillm evaluate``, per task, the exact-match accuracy of greedy answers to the held-out rows'
  last user turn (:func:`answer_accuracy`).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..core.config import ModelConfig
from ..data.batching import rank_batch_size
from ..data.chat_batches import ConversationBatches, conversation_eval_batches
from ..data.chat_template import DEFAULT_CHAT_TEMPLATE, apply_chat_template, read_chat_template
from ..data.conversations import LONG_CONVERSATIONS, check_conversation, encode_conversations
from ..data.instructions import DEFAULT_N_TRAIN, instruction_set
from ..store.checkpoint import load_checkpoint
from ..store.model_io import MODEL_KEY
from ..store.runs import checkpoint_folder, tokenizer_from_dict
from ..train.contract import data_contract, generated_dataset, sha256
from ..train.eval_data import generated_eval_data
from ..train.evaluation import EVAL_BATCH
from ..train.generation import generate
from ..train.spec import TaskInputs, TaskParts, TaskSpec, register_task
from ..train.task_endpoints import GENERATE, SCORE

__all__ = ["SFT_TASK", "SFTSource", "read_source", "answer_accuracy", "split_held_out", "check_enough",
           "VALIDATION_SHARE"]

logger = logging.getLogger("minillm")

# tasks a run of these may be tuned from (a GPT trained on text, or on conversations already)
SOURCE_TASKS = ("causal_lm", "sft")
MAX_ANSWER_TOKENS = 64          # the longest greedy answer generated for exact match


class SFTSource(NamedTuple):
    """What SFT starts from: the model's ``config`` and weights (``state``, NumPy), its
    ``tokenizer``, the chat ``template``, and ``kind`` (``"run"`` or ``"hf"``)."""

    config: ModelConfig
    state: dict
    tokenizer: object
    template: str
    kind: str


def _is_hf_folder(folder: Path) -> bool:
    path = folder / "config.json"
    if not path.is_file():
        return False
    try:
        return "model_type" in json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError):
        return False


def read_source(folder, *, dtype: str = "float32") -> SFTSource:
    """The model SFT starts from (module docstring): a Hugging Face folder (its
    ``config.json`` has ``model_type``), its weights read in ``dtype``, or a minillm run /
    checkpoint folder of a GPT, in the dtype it was trained in."""
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"{folder}: no such folder (expected a run folder or a Hugging Face folder)")
    if _is_hf_folder(folder):
        from .interop import read_hf
        from .interop.tokenizer import load_hf_tokenizer

        ckpt = read_hf(folder, dtype=dtype)
        if ckpt.model_class != "GPT":
            raise ValueError(f"{folder}: expected a decoder (GPT-2, Llama, Qwen) to tune on conversations, got a "
                             f"{ckpt.model_class}")
        tok = load_hf_tokenizer(folder)
        try:
            template = read_chat_template(folder)
        except ValueError:                                   # the folder has none: minillm's own
            template = DEFAULT_CHAT_TEMPLATE
        return SFTSource(ckpt.config, dict(ckpt.state), tok, template, "hf")
    ckpt = load_checkpoint(checkpoint_folder(folder))
    extra = ckpt.extra or {}
    kind = (extra.get(MODEL_KEY) or {}).get("class")
    if extra.get("task") not in SOURCE_TASKS or kind != "GPT":
        raise ValueError(f"{folder}: expected a run of a GPT trained as {' or '.join(SOURCE_TASKS)}, got a "
                         f"{extra.get('task')!r} run of a {kind!r}")
    tok = tokenizer_from_dict(ckpt.tokenizer)
    return SFTSource(ModelConfig.from_dict(ckpt.config), dict(ckpt.weights), tok,
                     getattr(tok, "chat_template", None) or DEFAULT_CHAT_TEMPLATE, "run")


def check_enough(rows: list, what: str) -> None:
    """Rows given: at least one for the test, one for validation and one to train on."""
    if len(rows) < 3:
        raise ValueError(f"expected at least 3 {what} (one held out for the test, one for validation, one to "
                         f"train on), got {len(rows)}")


# the share of the training rows that validates (chooses checkpoints/best); the held-out
# rows are for the test and evaluate only
VALIDATION_SHARE = 0.05


def split_held_out(rows: list, share: float, seed: int = 0) -> tuple[list, list]:
    """``(train, held_out)``: a seeded ``share`` of ``rows`` held out (at least one row,
    and at least one left to train on), each part in the file's order."""
    if not 0 < share < 1:
        raise ValueError(f"expected a held-out share in (0, 1), got {share}")
    if len(rows) < 2:
        raise ValueError(f"expected at least 2 rows (one to keep, one to hold out), got {len(rows)}")
    n = min(max(1, round(share * len(rows))), len(rows) - 1)
    held = set(np.random.default_rng(seed).permutation(len(rows))[:n].tolist())
    return ([r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held])


def _architecture(config: ModelConfig) -> dict:
    """The config without dropout: what must match between the source and the run."""
    return {k: v for k, v in config.to_dict().items() if k != "dropout"}


def _rows(inputs: TaskInputs):
    """The training and held-out rows, and the dataset record of the data contract."""
    opts = inputs.options
    if inputs.data is None:
        train, test = instruction_set(opts["n_train"], opts["n_test"], seed=0)
        return train, test, generated_dataset("instructions", {"train": opts["n_train"], "test": opts["n_test"]},
                                              "conversations of each task")
    rows = [check_conversation(row, f"data row {i}") for i, row in enumerate(inputs.data)]
    check_enough(rows, "conversations")
    train, test = split_held_out(rows, opts["held_out"], seed=0)
    source = inputs.source or "conversations"
    digest = sha256("\n".join(json.dumps(r, sort_keys=True) for r in rows).encode("utf-8"))
    return train, test, {"kind": "conversations", "source": source, "sha256": digest,
                         "split": {"method": "seeded share", "share": opts["held_out"], "seed": 0,
                                   "unit": "conversations", "sizes": {"train": len(train), "test": len(test)}}}


def _setup(inputs: TaskInputs) -> TaskParts:
    opts, cfg, tc, rt = inputs.options, inputs.run_config.model, inputs.run_config.train, inputs.runtime
    if opts["base"] is None:
        raise ValueError("task 'sft': expected base=, the run folder or Hugging Face folder to tune; got None")
    src = read_source(opts["base"])
    if _architecture(cfg) != _architecture(src.config):
        diff = {k: (v, _architecture(src.config).get(k)) for k, v in _architecture(cfg).items()
                if _architecture(src.config).get(k) != v}
        raise ValueError(f"task 'sft': the run's model config differs from {opts['base']}'s: "
                         f"{{field: (run's, source's)}} = {diff}")
    tok, template, T = src.tokenizer, src.template, cfg.block_size
    tok.chat_template = template
    train_rows, test_rows, dataset = _rows(inputs)
    # the checkpoint kept as best is chosen on validation rows carved from the training rows,
    # never on the held-out rows the test (and evaluate) scores it on
    fit_rows, validation_rows = split_held_out(train_rows, VALIDATION_SHARE, seed=1)
    train = encode_conversations(tok, template, fit_rows, T, "training conversations")
    validation = encode_conversations(tok, template, validation_rows, T, "validation conversations")
    held = encode_conversations(tok, template, test_rows, T, "held-out conversations")
    pad_id = _pad_id(tok)
    rows_here = rank_batch_size(tc.batch_size, rt.world_size)                 # this rank's rows of a batch
    batches = ConversationBatches(train.ids, train.targets, rows_here, T, pad_id, tc.seed, packing=opts["packing"],
                                  rank=rt.rank, world_size=rt.world_size)
    contract = {**data_contract(dataset, tok, T), "truncation": LONG_CONVERSATIONS}
    info = {"source_model": str(Path(opts["base"]).resolve()), "source_kind": src.kind,
            "packing": bool(opts["packing"]), "validation": {"share": VALIDATION_SHARE, "seed": 1,
                                                             "conversations": len(validation_rows)},
            "dropped": {"train": train.dropped, "validation": validation.dropped, "test": held.dropped}}
    return TaskParts(batches, conversation_eval_batches(validation.ids, validation.targets, EVAL_BATCH, pad_id),
                     contract, tok,
                     info=info, init=lambda model: model.load_state_dict(src.state), held_out=test_rows,
                     data=(train_rows, test_rows))


def _pad_id(tok) -> int:
    """The id padding takes (its targets are ignored, and a causal model never reads it)."""
    pad = getattr(tok, "pad_id", None)
    return int(pad) if pad is not None else _eos_id(tok)


def _eos_id(tok) -> int:
    """The id of the tokenizer's end-of-sequence token, the one the template ends answers with."""
    eos = tok.special_tokens_map.get("eos_token")
    ids = tok.encode_with_offsets(eos)[0] if eos else []
    if len(ids) != 1:
        raise ValueError(f"expected the tokenizer's eos_token to be one token (answers end with it), got {eos!r}")
    return int(ids[0])


def answer_accuracy(runtime, model, tok, template: str, rows, block_size: int) -> dict:
    """Per task, the share of ``rows`` whose greedy answer to the conversation before the
    last assistant turn equals that turn (both stripped of surrounding whitespace): ``{"exact":
    overall, "tasks": {task: {"exact", "n"}}, "skipped": rows longer than the window, dropped
    as training drops them (LONG_CONVERSATIONS), "examples": a few (expected, got)}``. Each
    answer may take as many tokens as the window leaves (the whole conversation fits it), at
    most ``MAX_ANSWER_TOKENS``."""
    eos = _eos_id(tok)
    prompts, wanted, tasks, skipped = [], [], [], 0
    for row in rows:
        messages = row["messages"]
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        if len(apply_chat_template(tok, template, messages[:last + 1]).ids) > block_size + 1:
            skipped += 1
            continue
        prompts.append(apply_chat_template(tok, template, messages[:last], add_generation_prompt=True).ids)
        wanted.append(messages[last]["content"].strip())
        tasks.append(row["task"])
    if not prompts:
        raise ValueError(f"every one of the {len(rows)} held-out rows has more than block_size + 1 = "
                         f"{block_size + 1} tokens")
    got = [""] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))    # batches of like lengths
    for start in range(0, len(order), EVAL_BATCH):
        chunk = order[start:start + EVAL_BATCH]
        room = min(MAX_ANSWER_TOKENS, block_size + 1 - max(len(prompts[i]) for i in chunk))
        for i, new in zip(chunk, generate(runtime, model, [prompts[i] for i in chunk], room, temperature=0.0,
                                          eos_id=eos)):
            got[i] = tok.decode([t for t in new if t != eos], skip_special_tokens=True).strip()
    right = np.array([g == w for g, w in zip(got, wanted)])
    per_task = {t: {"exact": float(right[[k == t for k in tasks]].mean()), "n": int(sum(k == t for k in tasks))}
                for t in sorted(set(tasks))}
    return {"exact": float(right.mean()), "tasks": per_task, "n": len(prompts), "skipped": skipped,
            "examples": [[w, g] for w, g in list(zip(wanted, got))[:4]]}


def _test(inputs: TaskInputs, parts: TaskParts, model, tok) -> dict:
    return {**answer_accuracy(inputs.runtime, model, tok, tok.chat_template, parts.held_out,
                              inputs.run_config.model.block_size), "split": "test"}


def _evaluate(run, **data) -> dict:
    """``minillm evaluate``: the run's held-out conversations, rebuilt as it recorded them."""
    own = dict(run.data.get("dataset") or {})
    if own.get("kind") == "conversations":
        if any(v is not None for v in data.values()):
            raise ValueError(f"{run.folder}: an sft run is scored on its own held-out conversations")
        from ..data.conversations import read_conversations
        rows = read_conversations(own["source"])
        digest = sha256("\n".join(json.dumps(r, sort_keys=True) for r in rows).encode("utf-8"))
        if digest != own.get("sha256"):
            raise ValueError(f"{own['source']}: the file changed since the run was trained (sha256 differs), so "
                             "its held-out conversations cannot be rebuilt")
        rows = split_held_out(rows, own["split"]["share"], own["split"]["seed"])[1]
        info = {"source": own["source"], "split": "test", "rows": len(rows), "runs_own_data": True}
    else:
        rows, info = generated_eval_data(run, lambda n_train, n_test, seed: instruction_set(n_train, n_test,
                                                                                            seed=seed), **data)
    return {**answer_accuracy(run.runtime, run.model, run.tokenizer, run.tokenizer.chat_template, rows,
                              run.config.block_size), "data": info}


# defaults of `minillm sft`: a short run at a low rate (tuning, not pretraining); packing on.
# No REST endpoint of its own: a path is declared by one task (causal_lm's /v1/generate), and an
# sft run is served by the chat endpoints, which read its tokenizer's chat_template
SFT_TASK = register_task(TaskSpec(
    "sft", "GPT", _setup, test=_test, test_best=True, steps=300, lr=1e-3, batch_size=16,
    recipe=lambda steps, lr: {"warmup_steps": min(30, steps // 10), "weight_decay": 0.0},
    options={"base": None, "packing": True, "n_train": DEFAULT_N_TRAIN, "n_test": 50, "held_out": 0.05},
    evaluate=_evaluate, endpoints=(GENERATE, SCORE)))
