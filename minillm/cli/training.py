"""The training commands: ``prepare`` (tokenize a corpus once), ``pretrain`` (a GPT or an
encoder), ``finetune`` (a classifier). Each calls :func:`minillm.train.entry.train`."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..data import Tokenizer, split_contiguous
from ..store.runs import load_run
from ..store.runtime import Runtime
from ..train import pipeline
from ..train.entry import train
from ..train.spec import TASK_SPECS
from .options import (MODEL_OPTIONS, POSITIVE_INT, add_corpus_args, add_lora_arg, add_model_args, add_option, add_training_args,
                      model_config_of, run_config_of)

__all__ = ["add_parsers", "cmd_prepare", "cmd_pretrain", "cmd_finetune", "TRAINING_COMMANDS"]

FINETUNE_DATA = """\
--dataset: 'sentiment' (the embedded set) or a labelled file of your own, split 80/10/10:
  .csv    a header row that names the columns, then one row per example, e.g.
              text,label
              "a good film",positive
              "dull and long",negative
  .jsonl  one JSON object per line, e.g. {"text": "a good film", "label": "positive"}
The text is in the column (field) 'text' and the label in 'label'; other names with
--text-column and --label-column. Labels are any strings; their sorted order gives the ids."""


def cmd_prepare(a) -> int:
    info = pipeline.prepare(a.corpus, a.out, tokenizer=a.tokenizer, vocab_size=a.vocab_size)
    print(json.dumps(info, indent=2))
    return 0


def _corpus(a):
    """(tokenizer, splits, source, dataset contract) from --data (prepared) or --corpus."""
    if a.data is not None:
        tok, splits = pipeline.load_prepared(a.data)
        return tok, splits, str(a.data), pipeline.prepared_dataset(a.data, splits)
    text = pipeline.load_corpus(a.corpus)
    if a.resume and (a.out / "tokenizer.json").exists():
        tok = Tokenizer.load(a.out / "tokenizer.json")                # the same ids as before
    else:
        tok = pipeline.train_tokenizer(a.tokenizer, text, a.vocab_size)
    ids = np.asarray(tok.encode(text), dtype=np.int64)
    splits = split_contiguous(ids, pipeline.TEXT_FRACTIONS)
    return tok, splits, a.corpus, pipeline.text_dataset(a.corpus, text, splits)


def _check_block_size(a, splits) -> None:
    """Every split must hold one window of --block-size + 1 tokens (inputs and their
    next-token targets): say the corpus is too short, its token count, how it was split,
    and what is needed (a longer corpus, or the largest --block-size it allows)."""
    smallest = min(map(len, splits))
    if a.block_size <= smallest - 1:
        return
    need = a.block_size + 1
    total = sum(map(len, splits))
    parts = ", ".join(f"{name} {len(part)}" for name, part in zip(splits._fields, splits))
    fractions = pipeline.TEXT_FRACTIONS
    enough = max(1, int((need - 1) / min(fractions)))                    # a lower bound: count up from it
    while min(map(len, split_contiguous(range(enough), fractions))) < need:   # fewest tokens that fit
        enough += 1
    how = f"use a corpus of at least {enough} tokens"
    if smallest >= 2:
        how += f", or --block-size {smallest - 1} or less"
    raise ValueError(f"the corpus is too short for --block-size {a.block_size}: its {total} tokens are split "
                     f"into {parts}, and each split must hold --block-size + 1 = {need} tokens (a window and "
                     f"its next-token targets); {how}")


def _print_summary(run) -> None:
    if run.runtime.is_main:
        print(json.dumps(run.summary, indent=2))


def cmd_pretrain(a) -> int:
    tok, splits, source, dataset = _corpus(a)
    _check_block_size(a, splits)
    run = train(a.task, a.out, run_config_of(a, a.task, model_config_of(a, tok.vocab_size)), data=splits,
                tokenizer=tok, resume=a.resume, overwrite=a.overwrite, source=source, dataset=dataset)
    _print_summary(run)
    return 0


def cmd_finetune(a) -> int:
    data = pipeline.load_labelled(a.dataset, seed=a.seed, text_column=a.text_column, label_column=a.label_column)
    encoder_state = None
    if a.pretrained is not None:
        given = sorted(dest for dest in MODEL_OPTIONS if dest in getattr(a, "given", ()))
        if given:
            raise ValueError(f"--pretrained {a.pretrained}: the model is the encoder's, as it was pretrained, so "
                             f"the model options are not read; got {', '.join('--' + d.replace('_', '-') for d in given)}"
                             f": leave them out (or pretrain another encoder with them)")
        encoder = load_run(a.pretrained, Runtime("numpy"), task="masked_lm")
        tok, cfg, encoder_state = encoder.tokenizer, encoder.config, encoder.model.state_dict()
    else:
        if a.resume and (a.out / "tokenizer.json").exists():
            tok = Tokenizer.load(a.out / "tokenizer.json")            # the same ids as before
        else:
            tok = pipeline.train_tokenizer(a.tokenizer, "\n".join(data.train.texts), a.vocab_size)
        cfg = model_config_of(a, tok.vocab_size)
    dataset = pipeline.labelled_dataset(a.dataset, data, seed=a.seed, text_column=a.text_column,
                                        label_column=a.label_column)
    run = train("classification", a.out, run_config_of(a, "classification", cfg), data=data, tokenizer=tok,
                resume=a.resume, overwrite=a.overwrite, source=a.dataset, dataset=dataset,
                encoder_state=encoder_state, pooling=a.pooling)
    _print_summary(run)
    return 0


TRAINING_COMMANDS = (cmd_pretrain, cmd_finetune)       # and translate --train, answer --train


def add_parsers(sub, command) -> None:
    p = command(sub, "prepare", help="train a tokenizer and tokenize a corpus into train/validation/test")
    fallbacks: dict = {}
    add_corpus_args(p, fallbacks)
    p.add_argument("--out", type=Path, required=True, help="folder to write")
    p.set_defaults(func=cmd_prepare, fallbacks=fallbacks)

    p = command(sub, "pretrain", help="pretrain a GPT (causal LM) or an encoder (masked LM)")
    fallbacks = {}
    add_corpus_args(p, fallbacks)
    tasks = [spec.name for spec in TASK_SPECS.values() if spec.command == "pretrain"]    # the registry's
    p.add_argument("--task", choices=tasks, default=tasks[0],
                   help="causal_lm: a GPT (next token); masked_lm: an encoder (masked tokens)")
    add_training_args(p, fallbacks, tasks[0])           # the others: the same defaults
    add_model_args(p, fallbacks, d_model=128, n_layers=4, block_size=64)
    p.set_defaults(func=cmd_pretrain, fallbacks=fallbacks)

    p = command(sub, "finetune", help="fine-tune a classifier (a real head) from a pretrained encoder",
                epilog=FINETUNE_DATA)
    fallbacks = {}
    p.add_argument("--pretrained", type=Path, default=None, help="a masked_lm run folder (default: from scratch)")
    add_option(p, fallbacks, "--dataset", default="sentiment",
               help="'sentiment' (embedded) or a labelled .csv (with a header row) or .jsonl file: see below")
    add_option(p, fallbacks, "--text-column", default="text", help="the CSV column / JSONL field that holds the text")
    add_option(p, fallbacks, "--label-column", default="label",
               help="the CSV column / JSONL field that holds the label")
    p.add_argument("--pooling", choices=("mean", "cls"), default="mean",
                   help="how the encoder's positions become one vector for the head")
    p.add_argument("--tokenizer", choices=sorted(pipeline.TOKENIZERS), default="bpe",
                   help="only without --pretrained")
    p.add_argument("--vocab-size", type=POSITIVE_INT, default=512, help="only without --pretrained")
    add_training_args(p, fallbacks, "classification")   # the task's defaults (minillm.train.task_specs)
    add_lora_arg(p, fallbacks)
    add_model_args(p, fallbacks, d_model=128, n_layers=2, block_size=64)
    p.set_defaults(func=cmd_finetune, fallbacks=fallbacks)
