"""``minillm dpo``: preference tuning of a GPT run (an sft run normally) with DPO; the task
is :mod:`minillm.apps.dpo`, the loss :func:`minillm.reference.dpo_objective`."""
from __future__ import annotations

import json
from pathlib import Path

from ..apps.dpo import DPO_TASK, EMBEDDED, read_policy
from ..data.preferences import read_preferences
from ..train.entry import train
from .options import FRACTION, POSITIVE, add_lora_arg, add_option, add_training_args, run_config_of

__all__ = ["add_parsers", "cmd_dpo"]

DPO_DATA = """\
--data: 'preferences' (the embedded set: the instruction set's tasks, each prompt with its
right answer chosen and a plausibly wrong one rejected) or a JSONL file in trl's format,
one pair a line, either strings
    {"prompt": "ISO date: may the third , 1999", "chosen": "1999-05-03", "rejected": "1999-03-05"}
or conversational, the prompt a list of messages and each completion one assistant message
    {"prompt": [{"role": "user", "content": "Sentiment: a dull film"}],
     "chosen": [{"role": "assistant", "content": "negative"}],
     "rejected": [{"role": "assistant", "content": "positive"}]}
A conversational prompt is rendered with the run's chat template (add_generation_prompt);
a string prompt too when the run has one (an sft run), as one user message. A share of the
pairs (--held-out) is kept for the reward accuracy; a pair longer than the model's window,
or whose chosen and rejected are equal, is an error naming its line. --batch-size counts
pairs (two rows each)."""


def _recorded(out: Path) -> dict:
    """What a dpo run in ``out`` recorded of --from, --reference, --beta, --label-smoothing
    --data and --held-out (run.json, data.json), for --resume."""
    try:
        run = json.loads((out / "run.json").read_text(encoding="utf-8"))
        dataset = json.loads((out / "data.json").read_text(encoding="utf-8")).get("dataset") or {}
    except (OSError, ValueError):
        return {}
    data = EMBEDDED if dataset.get("kind") == "generated" else dataset.get("source")
    return {"from_": run.get("source_model"), "reference": run.get("reference_model"), "beta": run.get("beta"),
            "label_smoothing": run.get("label_smoothing"), "data": data,
            "held_out": (dataset.get("split") or {}).get("share")}


def cmd_dpo(a) -> int:
    if a.resume:                                         # the options left out: as the run recorded them
        for dest, value in _recorded(a.out).items():
            if getattr(a, dest, None) is None and value is not None:
                setattr(a, dest, value)
    if a.from_ is None:
        raise ValueError("expected --from RUN, the run to tune (an sft run), got none")
    config = read_policy(a.from_)[0]
    data = a.data or EMBEDDED
    pairs = None if data == EMBEDDED else read_preferences(data)
    reference = a.reference if a.reference is None or str(a.reference) != str(Path(a.from_).resolve()) else None
    run = train("dpo", a.out, run_config_of(a, "dpo", config), data=pairs, resume=a.resume,
                overwrite=a.overwrite, source=str(data), base=a.from_, reference=reference,
                beta=a.beta if a.beta is not None else DPO_TASK.options["beta"],
                label_smoothing=a.label_smoothing if a.label_smoothing is not None else 0.0,
                held_out=a.held_out if a.held_out is not None else DPO_TASK.options["held_out"], data_source=None if pairs is None else str(Path(data).resolve()))
    if run.runtime.is_main:
        print(json.dumps(run.summary, indent=2))
    return 0


def add_parsers(sub, command) -> None:
    p = command(sub, "dpo", help="preference-tune a GPT run (an sft run) with DPO on chosen/rejected pairs",
                epilog=DPO_DATA)
    fallbacks: dict = {}
    p.add_argument("--from", dest="from_", type=Path, default=None, metavar="RUN",
                   help="the run to tune, the policy's start and (without --reference) the frozen reference "
                        "(an sft run; a causal_lm or dpo run too); required unless --resume")
    p.add_argument("--data", default=None,
                   help=f"'{EMBEDDED}' (embedded) or a JSONL file of preference pairs: see below (default: "
                        f"{EMBEDDED})")
    p.add_argument("--reference", type=Path, default=None, metavar="RUN",
                   help="another run as the frozen reference; its model config must equal the policy's "
                        "(default: --from's weights)")
    p.add_argument("--beta", type=POSITIVE, default=None,
                   help=f"DPO's beta, the strength of the pull towards the reference "
                        f"(default: {DPO_TASK.options['beta']}, trl's)")
    p.add_argument("--label-smoothing", type=FRACTION, default=None,
                   help="conservative DPO: the share of pairs believed flipped, in [0, 0.5) (default: 0)")
    p.add_argument("--held-out", type=FRACTION, default=None,
                   help=f"a JSONL file's share of pairs held out for the reward accuracy "
                        f"(default: {DPO_TASK.options['held_out']})")
    add_training_args(p, fallbacks, "dpo")
    add_lora_arg(p, fallbacks)
    p.set_defaults(func=cmd_dpo, fallbacks=fallbacks)
