"""The tuning commands: ``sft`` (instruction tuning on conversations, issue 26). Each calls
:func:`minillm.train.entry.train` with the task of :mod:`minillm.apps.sft`."""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from ..apps.sft import read_source
from ..data.conversations import LONG_CONVERSATIONS, read_conversations
from ..data.instructions import DEFAULT_N_TRAIN
from ..train.contract import source_of
from ..train.entry import train
from .options import FRACTION, POSITIVE_INT, add_lora_arg, add_training_args, run_config_of

__all__ = ["add_parsers", "cmd_sft", "TRAINING_COMMANDS"]

SFT_DATA = f"""\
--data: 'instructions' (the embedded instruction set: sentiment, ISO dates, extractive QA
and simple instructions, with held-out rows) or a .jsonl file, one conversation a line:
    {{"messages": [{{"role": "system", "content": "Be brief."}},
                  {{"role": "user", "content": "Sentiment: the plot was good."}},
                  {{"role": "assistant", "content": "positive"}}], "task": "sentiment"}}
Roles: system, user, assistant; "task" (optional) groups the held-out scores. The loss is on
the assistant's tokens only; {LONG_CONVERSATIONS}. The chat template is the model's own
(a Hugging Face folder's, an sft run's), else minillm's (DEFAULT_CHAT_TEMPLATE)."""

EMBEDDED = "instructions"


def _recorded(out: Path) -> dict:
    """What the run in ``out`` recorded about its base model and data (for --resume)."""
    try:
        run = json.loads((out / "run.json").read_text(encoding="utf-8"))
        data = json.loads((out / "data.json").read_text(encoding="utf-8")).get("dataset") or {}
    except (OSError, ValueError):
        return {}
    return {"base": run.get("source_model"), "data": data.get("source")}


def cmd_sft(a) -> int:
    recorded = _recorded(a.out) if a.resume else {}
    base = a.base or recorded.get("base")
    if base is None:
        raise ValueError("expected --from FOLDER, the run folder or Hugging Face folder to tune")
    data = a.data or recorded.get("data") or EMBEDDED
    config = read_source(base).config
    if a.dropout is not None:
        config = dataclasses.replace(config, dropout=a.dropout)
    rows = None if data == EMBEDDED else read_conversations(data)
    run = train("sft", a.out, run_config_of(a, "sft", config), data=rows, resume=a.resume, overwrite=a.overwrite,
                source=EMBEDDED if rows is None else source_of(data), base=base, packing=a.packing,
                n_train=a.n_train, n_test=a.n_test, held_out=a.held_out)
    if run.runtime.is_main:
        print(json.dumps(run.summary, indent=2))
    return 0


TRAINING_COMMANDS = (cmd_sft,)


def add_parsers(sub, command) -> None:
    p = command(sub, "sft", help="instruction-tune a GPT on conversations, the loss on the answers only",
                epilog=SFT_DATA)
    fallbacks: dict = {}
    p.add_argument("--from", dest="base", default=None,
                   help="the model to tune: a run folder (pretrain's causal_lm, or an sft run) or a Hugging "
                        "Face folder (GPT-2, Llama, Qwen); --resume: the run's")
    p.add_argument("--data", default=None, help="'instructions' (embedded) or a .jsonl of conversations: see below "
                                                "(default: instructions; --resume: the run's)")
    p.add_argument("--packing", action=argparse.BooleanOptionalAction, default=True,
                   help="pack several conversations into each row, attention kept inside each (else one a row, "
                        "padded)")
    p.add_argument("--n-train", type=POSITIVE_INT, default=DEFAULT_N_TRAIN, help="embedded set: training rows of each task")
    p.add_argument("--n-test", type=POSITIVE_INT, default=50, help="embedded set: held-out rows of each task")
    p.add_argument("--held-out", type=FRACTION, default=0.05, help="a .jsonl file: the share held out, seeded")
    p.add_argument("--dropout", type=FRACTION, default=None, help="dropout while tuning (default: the model's)")
    add_training_args(p, fallbacks, "sft")              # the task's defaults (minillm.apps.sft)
    add_lora_arg(p, fallbacks)
    p.set_defaults(func=cmd_sft, fallbacks=fallbacks)
