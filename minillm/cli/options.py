"""The options the commands share, declared once: the runtime (``--backend``,
``--device``, ``--explicit``), the training options, the model's, the corpus's, and the
run folder's (``--resume`` / ``--overwrite``); and how they become a
:class:`~minillm.store.runtime.Runtime` and a :class:`~minillm.train.run_config.RunConfig`.

Options that ``--resume`` takes from the run are declared with :func:`add_option`: argparse
gives them ``None`` when left out, and :func:`fill_defaults` gives them, in order, the
value the run recorded (``--resume``, :mod:`minillm.cli.resume`) or their default.
"""
from __future__ import annotations

import argparse
import math
import textwrap
from pathlib import Path

from ..core.config import ACTIVATIONS, ARCHITECTURES, GATED_ACTIVATIONS, POSITIONALS, ModelConfig, architecture_fields
from ..core.lora import LoRAConfig
from ..store.runtime import BACKENDS, DEFAULT_BACKEND_RULE, DEVICES, Runtime, default_backend
from ..train import pipeline
from ..train.run_config import RunConfig
from ..train.spec import task_spec
from ..train.training import TrainConfig

__all__ = ["HelpFormatter", "add_option", "fill_defaults", "add_runtime_args", "add_training_args", "add_lora_arg",
           "add_model_args", "add_corpus_args", "runtime_of", "run_config_of", "model_config_of",
           "TRAINING_OPTIONS", "DESCRIPTION"]

DESCRIPTION = textwrap.fill("Every formula of LLM training, in NumPy and in PyTorch: prepare a corpus, pretrain a GPT or "
               "an encoder, fine-tune a classifier, instruction-tune (SFT) and preference-tune (DPO) a GPT, "
               "evaluate, generate, embed, translate, answer questions, serve a run over HTTP, benchmark. `minillm COMMAND --help` shows a command's options "
               "and their defaults.", width=88)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default, unless the help already says it (or
    there is none to say: a flag, a required option, a default of None explained in words).
    Descriptions and epilogs keep their line breaks (the data formats are laid out)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (not action.option_strings or action.required or default is None or default is False
                or default == argparse.SUPPRESS or default == [] or "default" in text):
            return text
        if isinstance(default, (list, tuple)):
            return text + " (default: " + " ".join(map(str, default)) + ")"
        return text + " (default: %(default)s)"


def _number(kind, what: str, ok):
    """An argparse ``type`` that refuses values outside ``ok``: argparse then answers
    ``argument --lr: expected a number > 0, got -1``, naming the option as typed."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if (kind is float and not math.isfinite(value)) or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return value
    parse.__name__ = what            # argparse's own "invalid <type> value" names the type
    return parse


POSITIVE_INT = _number(int, "an integer >= 1", lambda v: v >= 1)
NONNEG_INT = _number(int, "an integer >= 0", lambda v: v >= 0)
POSITIVE = _number(float, "a number > 0", lambda v: v > 0)
NONNEG = _number(float, "a number >= 0", lambda v: v >= 0)
FRACTION = _number(float, "a number in [0, 1)", lambda v: 0 <= v < 1)
TOP_P = _number(float, "a number in (0, 1]", lambda v: 0 < v <= 1)
MAX_NEW_TOKENS = 100_000      # `generate`: past block_size each token is a forward over the whole window
NEW_TOKENS = _number(int, f"an integer in [0, {MAX_NEW_TOKENS}]", lambda v: 0 <= v <= MAX_NEW_TOKENS)
PORT = _number(int, "a port in [0, 65535]", lambda v: 0 <= v <= 65535)
SEED = NONNEG_INT


# -- options --resume can fill --------------------------------------------------------------

def add_option(group, fallbacks: dict, *flags, default, help: str, shown=None, **kwargs):
    """An option whose value, when left out, comes later (:func:`fill_defaults`): from the
    run being resumed, else ``default``. ``fallbacks`` collects ``{dest: default}`` for the
    command (``p.set_defaults(fallbacks=...)``); the help states the default (``shown``
    where words say it better than the value)."""
    shown = default if shown is None else shown
    if isinstance(shown, (list, tuple)):
        shown = " ".join(map(str, shown))
    if default is not None or shown:
        help = f"{help} (default: {shown})"
    action = group.add_argument(*flags, default=None, help=help, **kwargs)
    fallbacks[action.dest] = default
    return action


def fill_defaults(args, recorded: dict | None = None) -> None:
    """Every option of :func:`add_option` left out takes ``recorded[dest]`` (the run's
    value, ``--resume``) where there is one, else its default."""
    recorded = recorded or {}
    args.given = frozenset(dest for dest in getattr(args, "fallbacks", {}) if getattr(args, dest) is not None)
    for dest, default in getattr(args, "fallbacks", {}).items():
        if getattr(args, dest) is None:
            setattr(args, dest, recorded.get(dest, default))


# -- the runtime ------------------------------------------------------------------------------

EXPLICIT_HELP = ("torch backend: run the explicit path, the reference's formulas written with tensor ops, "
                 "instead of the default fast path (torch's own kernels); same results within rounding")


def add_runtime_args(p, *, amp: bool = False, when: str = "") -> None:
    """``--backend``, ``--device``, ``--explicit`` (and ``--amp`` for training): the same
    options, the same default, in every command."""
    p.add_argument("--backend", choices=BACKENDS, default=default_backend(),
                   help=f"numpy: the reference with hand-written gradients; torch: autograd "
                        f"(default: %(default)s; every command's: {DEFAULT_BACKEND_RULE})")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="torch backend only (default: %(default)s)")
    if amp:
        p.add_argument("--amp", action="store_true", help=f"{when}bf16 autocast (torch backend on CUDA)")
    p.add_argument("--explicit", action="store_true", help=EXPLICIT_HELP)


def _where(a) -> dict:
    """The runtime options as :class:`Runtime`'s fields (``fused``: the fast path unless --explicit)."""
    return {"backend": a.backend, "device": a.device, "amp": getattr(a, "amp", False), "fused": not a.explicit}


def runtime_of(a) -> Runtime:
    """The :class:`Runtime` a command that uses a run asks for."""
    return Runtime(**_where(a))


def run_config_of(a, task: str, model: ModelConfig) -> RunConfig:
    """The training options as the run's configuration (their defaults: the task's)."""
    return RunConfig(model, train_config_of(a, task), **_where(a))


# -- training ---------------------------------------------------------------------------------

# the options every training command has (pretrain, finetune, translate --train, answer --train)
TRAINING_OPTIONS = ("--backend", "--device", "--amp", "--explicit", "--out", "--steps", "--seed", "--resume",
                    "--overwrite", "--batch-size", "--lr", "--warmup-steps", "--weight-decay", "--grad-clip",
                    "--eval-every")


def add_training_args(p: argparse.ArgumentParser, fallbacks: dict, task: str, *, out_required: bool = True,
                      when: str = "") -> None:
    """The training options, the same for every training command; their defaults are the
    task's (:class:`~minillm.train.spec.TaskSpec`: steps, lr, batch size, recipe).
    ``when``: a prefix of the help of options that only matter in one mode (``--train: ``)."""
    spec = task_spec(task)
    rule = spec.train_config(spec.steps)
    default = TrainConfig.recipe(spec.steps, spec.lr)
    warmup = ("5%% of --steps" if rule.warmup_steps == default.warmup_steps
              else "10%% of --steps, at most 50")
    every = "--steps / 4" if rule.eval_every == default.eval_every else "--steps (once, at the end)"
    g = p.add_argument_group("training")
    add_runtime_args(g, amp=True, when=when)
    g.add_argument("--out", type=Path, required=out_required, default=None, help=f"{when}run folder to write")
    add_option(g, fallbacks, "--steps", type=POSITIVE_INT, default=spec.steps, help=f"{when}optimizer steps")
    add_option(g, fallbacks, "--seed", type=SEED, default=0, help="seed of weights, batches and masks")
    x = g.add_mutually_exclusive_group()
    x.add_argument("--resume", action="store_true",
                   help="continue the run in OUT from OUT/checkpoints/last, exactly; options left out take "
                        "the values the run recorded (its data included)")
    x.add_argument("--overwrite", action="store_true",
                   help="OUT holds a run: delete its files (only those a run writes) and start again")
    add_option(g, fallbacks, "--batch-size", type=POSITIVE_INT, default=spec.batch_size,
               help=f"{when}global batch size")
    add_option(g, fallbacks, "--lr", type=POSITIVE, default=spec.lr, help=f"{when}peak learning rate")
    add_option(g, fallbacks, "--warmup-steps", type=NONNEG_INT, default=None, shown=warmup, help=f"{when}warmup")
    add_option(g, fallbacks, "--weight-decay", type=NONNEG, default=None, shown=f"{rule.weight_decay:g}",
               help=f"{when}AdamW's decoupled weight decay, on the tensors of two or more dimensions "
                    f"(linear weights, embeddings; never biases or LayerNorm, as nanoGPT)")
    add_option(g, fallbacks, "--grad-clip", type=POSITIVE, default=1.0, help=f"{when}largest global gradient norm")
    add_option(g, fallbacks, "--eval-every", type=POSITIVE_INT, default=None, shown=every,
               help=f"{when}evaluation and checkpoint interval")


def _lora_spec(text: str) -> str:
    """--lora's value, checked and written one way (``8,16,W_Q,W_V``)."""
    try:
        return str(LoRAConfig.parse(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_lora_spec.__name__ = "r,alpha,targets"


def add_lora_arg(p, fallbacks: dict) -> None:
    """``--lora r,alpha,targets``: the option of the commands that fine-tune a trained model
    (finetune, sft, dpo). Recorded with the run's training config, so --resume takes it."""
    add_option(p, fallbacks, "--lora", type=_lora_spec, default=None, shown="off: every weight trains",
               metavar="R,ALPHA,TARGETS",
               help="train LoRA adapters only (Hu et al. 2021), e.g. 8,16,W_Q,W_V: the rank r, alpha (scale "
                    "alpha/r), then the projections to adapt, by leaf name (W_Q, W_K, W_V, W_O, W1, W2; "
                    "gated: W_gate, W_up, W_down), full name (blocks.0.attn.W_Q) or fnmatch pattern; the "
                    "other weights stay frozen bit for bit (a classifier's new head trains too); r must lie "
                    "in 1..min(d_in, d_out) of each")


def train_config_of(a, task: str) -> TrainConfig:
    """The training options as a TrainConfig: those not given take the task's default
    policy (:meth:`TaskSpec.train_config`, from :meth:`TrainConfig.recipe`)."""
    return task_spec(task).train_config(a.steps, a.lr, batch_size=a.batch_size, warmup_steps=a.warmup_steps,
                                        eval_every=a.eval_every, weight_decay=a.weight_decay,
                                        grad_clip=a.grad_clip, seed=a.seed, lora=getattr(a, "lora", None))


# -- the model --------------------------------------------------------------------------------

def _arch_help() -> str:
    """--arch's help: what each preset sets, read from the table (ARCHITECTURES)."""
    def said(fields):
        return ", ".join(f"{k}={v}" for k, v in fields.items() if k != "kv_group") + (
            f", n_kv_heads=n_heads/{fields['kv_group']} where it divides" if fields["kv_group"] > 1 else "")
    return ("the model's design, a preset of ModelConfig fields: "
            + "; ".join(f"{name}: {said(fields)}" for name, fields in ARCHITECTURES.items())
            + " (rope_layout only with rope; --activation and --positional override the preset; QK-norm "
              "is off in both, as in Llama 1 to 3)")


ARCH_HELP = _arch_help()


# the destinations of add_model_args' options: what `finetune --pretrained` cannot take
MODEL_OPTIONS = ("d_model", "n_layers", "n_heads", "block_size", "dropout", "arch", "activation", "post_norm",
                 "dtype", "positional", "init_std")


def add_model_args(p: argparse.ArgumentParser, fallbacks: dict, *, d_model: int, n_layers: int,
                   block_size: int) -> None:
    m = p.add_argument_group("model")
    add_option(m, fallbacks, "--d-model", type=POSITIVE_INT, default=d_model, help="width of the residual stream")
    add_option(m, fallbacks, "--n-layers", type=POSITIVE_INT, default=n_layers, help="Transformer blocks")
    add_option(m, fallbacks, "--n-heads", type=POSITIVE_INT, default=4, help="attention heads; must divide --d-model")
    add_option(m, fallbacks, "--block-size", type=POSITIVE_INT, default=block_size,
               help="the most tokens the model sees at once")
    add_option(m, fallbacks, "--dropout", type=FRACTION, default=0.0, help="dropout probability")
    add_option(m, fallbacks, "--arch", choices=tuple(ARCHITECTURES), default="gpt2", help=ARCH_HELP)
    add_option(m, fallbacks, "--activation", choices=ACTIVATIONS + tuple(GATED_ACTIVATIONS), default=None,
               shown="--arch's", help="of the feed-forward layers (swiglu: the gated one)")
    add_option(m, fallbacks, "--post-norm", action="store_true", default=False, shown="pre-norm",
               help="post-norm blocks")
    add_option(m, fallbacks, "--dtype", choices=("float32", "float64"), default="float32", help="of the weights")
    add_option(m, fallbacks, "--positional", choices=POSITIONALS, default=None, shown="--arch's",
               help="positions added to the embeddings (learned, sinusoidal) or queries and keys "
                    "rotated in attention (rope; needs an even head size)")
    add_option(m, fallbacks, "--init-std", type=POSITIVE, default=0.02, shown="0.02, GPT-2's",
               help="standard deviation of the initial weights")


def model_config_of(a, vocab_size: int) -> ModelConfig:
    """The model options as a ModelConfig: --arch's preset, with --activation and
    --positional where given."""
    return ModelConfig(vocab_size=vocab_size, block_size=a.block_size, d_model=a.d_model, n_heads=a.n_heads,
                       n_layers=a.n_layers, dropout=a.dropout, norm_first=not a.post_norm, dtype=a.dtype,
                       init_std=a.init_std, **architecture_fields(a.arch, a.n_heads, activation=a.activation,
                                                                   positional=a.positional))


# -- the corpus -------------------------------------------------------------------------------

def add_corpus_args(p, fallbacks: dict) -> None:
    add_option(p, fallbacks, "--corpus", default="python_docs",
               help="'python_docs' (embedded), 'sentiment' (the embedded sentiment set's training texts), "
                    "'python_docs+requests' (the Python docs, then the requests of the embedded instruction "
                    "set's training rows, answers left out: a base for `minillm sft`) or a .txt/.jsonl/.csv file")
    add_option(p, fallbacks, "--data", type=Path, default=None,
               help="a folder written by `minillm prepare` (overrides --corpus)")
    add_option(p, fallbacks, "--tokenizer", choices=sorted(pipeline.TOKENIZERS), default="bpe",
               help="the tokenizer trained on the corpus")
    add_option(p, fallbacks, "--vocab-size", type=POSITIVE_INT, default=1024,
               help="bpe: merges up to this size; word: the most frequent words (char: ignored)")
