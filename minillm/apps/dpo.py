r"""The ``dpo`` task (issue 26.3, Rafailov et al. 2023): a causal LM tuned on preference
pairs, pushed towards the chosen completion and away from the rejected one, relative to a
frozen reference model.

- the policy: the GPT of a run folder (``base``: an ``sft`` run normally; a
  ``causal_lm`` or ``dpo`` run too), its weights, tokenizer and chat template; a LoRA run's
  adapters are folded into its weights first;
- the reference: the same weights (or ``reference``, a run whose model config must equal
  the policy's), FROZEN: the log-probabilities :math:`\log\pi_{ref}(y|x)` of every pair's
  two completions are computed once, in evaluation mode, without gradients (``trl``'s
  ``precompute_ref_log_probs``), and ride in the batches;
- the loss: :func:`~minillm.reference.dpo_objective` (``dpo_loss`` over ``sequence_logps``
  of the completion tokens, with ``beta`` and ``label_smoothing``; ``rpo_alpha`` adds the
  chosen answers' cross-entropy), the backend's, so the reference backend's gradient is the
  hand-written chain;
- the data: the embedded preference set (:func:`~minillm.data.preferences.preference_set`)
  or pairs given (``trl``'s JSONL, :func:`~minillm.data.preferences.read_preferences`), of
  which a seeded share is held out;
- the scores: on held-out pairs, the loss, the reward accuracy (the share of pairs whose
  chosen completion gets the higher implicit reward :math:`\beta(\log\pi_\theta -
  \log\pi_{ref})`) and the mean margin; ``checkpoints/best`` is the highest reward accuracy.
  At the end and in ``minillm evaluate``, with them, the per-task exact match of greedy
  answers to the held-out prompts (SFT's :func:`~minillm.apps.sft.answer_accuracy`), so a
  DPO run can be checked against its SFT run task by task.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ..core.config import IGNORE_INDEX, ModelConfig
from ..data.batching import rank_batch_size
from ..data.chat_template import DEFAULT_CHAT_TEMPLATE
from ..data.preferences import TooLong, encode_pair, preference_set, read_preferences
from ..store import model_io
from ..store.lora_adapters import adapters, merge_lora
from ..store.runs import checkpoint_folder, tokenizer_from_dict
from ..train.contract import data_contract, generated_dataset, sha256
from ..train.spec import TaskInputs, TaskParts, TaskSpec, register_task
from ..train.task_endpoints import GENERATE, SCORE
from .sft import VALIDATION_SHARE, check_enough, split_held_out

logger = logging.getLogger("minillm")

__all__ = ["DPO_TASK", "PreferenceBatches", "PreferenceData", "read_policy", "preference_scores",
           "SOURCE_TASKS", "EMBEDDED"]

SOURCE_TASKS = ("sft", "causal_lm", "dpo")       # what a policy may start from: a GPT run of these
EMBEDDED = "preferences"                          # --data's name of the embedded set
EVAL_PAIRS = 16                                   # pairs per evaluation batch (32 rows)


# -- the models ---------------------------------------------------------------------------

def _merged_state(folder, backend: str):
    """``(model, checkpoint)`` of a run folder, built in ``backend``, its LoRA adapters
    folded into the weights and dropped: a plain GPT's weights."""
    model, ckpt = model_io.load_model(checkpoint_folder(folder), backend)
    if adapters(model):
        merge_lora(model)
    state = {k: v for k, v in model_io.model_state(model).items() if ".lora_" not in k}
    return state, ckpt


def read_policy(folder, backend: str = "numpy"):
    """What DPO starts from: ``(config, state, tokenizer, checkpoint)`` of the GPT of the run
    in ``folder`` (a run of one of :data:`SOURCE_TASKS`)."""
    folder = Path(folder)
    state, ckpt = _merged_state(folder, backend)
    extra = ckpt.extra or {}
    kind = (extra.get(model_io.MODEL_KEY) or {}).get("class")
    if extra.get("task") not in SOURCE_TASKS or kind != "GPT":
        raise ValueError(f"{folder}: expected a run of a GPT trained as {', '.join(SOURCE_TASKS)}, got a "
                         f"{extra.get('task')!r} run of a {kind!r}")
    return ModelConfig.from_dict(ckpt.config), state, tokenizer_from_dict(ckpt.tokenizer), ckpt


def _architecture(config: ModelConfig) -> dict:
    """The config without dropout: what the policy, its source and the reference share."""
    return {k: v for k, v in config.to_dict().items() if k != "dropout"}


def _differences(a: ModelConfig, b: ModelConfig) -> dict:
    mine, theirs = _architecture(a), _architecture(b)
    return {k: (mine.get(k), theirs.get(k)) for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)}


# -- the batches ----------------------------------------------------------------------------

class PreferenceData:
    """Encoded pairs: ``rows`` the 2P causal-LM rows (P chosen, then P rejected, pair p's at
    p and P + p), each ``(idx, targets)``, and ``reference_logps`` (2P,), the frozen
    reference's log-probability of each row's completion."""

    def __init__(self, encoded: list, reference_logps=None):
        self.chosen = [(e.chosen_idx, e.chosen_targets) for e in encoded]
        self.rejected = [(e.rejected_idx, e.rejected_targets) for e in encoded]
        self.reference_logps = reference_logps

    def __len__(self):
        return len(self.chosen)

    def batch(self, pairs, pad_id: int, with_reference: bool = True) -> dict:
        """The pairs ``pairs`` (indices) as one batch: ``idx``, ``targets`` (2P, T) right-padded
        (padding's targets -100; a causal model never reads a later position), and
        ``reference_logps`` (2P,)."""
        rows = [self.chosen[p] for p in pairs] + [self.rejected[p] for p in pairs]
        T = max(len(i) for i, _ in rows)
        idx = np.full((len(rows), T), pad_id, dtype=np.int64)                        # (2P, T)
        targets = np.full((len(rows), T), IGNORE_INDEX, dtype=np.int64)               # (2P, T)
        for r, (i, t) in enumerate(rows):
            idx[r, :len(i)], targets[r, :len(t)] = i, t
        out = {"idx": idx, "targets": targets}
        if with_reference:
            ref = np.asarray(self.reference_logps, dtype=np.float64)                  # (2P,) of all pairs
            n = len(self.chosen)
            out["reference_logps"] = np.concatenate([ref[list(pairs)], ref[[n + p for p in pairs]]])
        return out


class PreferenceBatches:
    """Training batches: step ``s`` is batch ``s % steps_per_epoch`` of epoch
    ``s // steps_per_epoch``, the order drawn from ``(seed, epoch)``; ``batch_size`` pairs
    (2 ``batch_size`` rows) each, this rank's share under ``torchrun``."""

    def __init__(self, data: PreferenceData, batch_size: int, pad_id: int, seed: int = 0, *,
                 rank: int = 0, world_size: int = 1):
        if len(data) < batch_size * world_size:
            raise ValueError(f"need at least batch_size = {batch_size * world_size} training pairs, got {len(data)}")
        self.data, self.batch_size, self.pad_id, self.seed = data, batch_size, pad_id, seed
        self.rank, self.world_size = rank, world_size
        self.steps_per_epoch = len(data) // (batch_size * world_size)

    def batch(self, step: int) -> dict:
        epoch, k = divmod(step, self.steps_per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.data))
        mine = order[self.rank::self.world_size][k * self.batch_size:(k + 1) * self.batch_size]
        return self.data.batch([int(p) for p in mine], self.pad_id)


class PreferenceEval(list):
    """Evaluation batches (a list: the trainer's validation data, and the test's) with the run's ``beta``
    and ``label_smoothing``, which the scores need."""

    def __init__(self, batches, beta: float, label_smoothing: float):
        super().__init__(batches)
        self.beta, self.label_smoothing = beta, label_smoothing


def _eval_batches(data: PreferenceData, pad_id: int, beta: float, label_smoothing: float) -> PreferenceEval:
    pairs = list(range(len(data)))
    return PreferenceEval([data.batch(pairs[i:i + EVAL_PAIRS], pad_id) for i in range(0, len(pairs), EVAL_PAIRS)],
                          beta, label_smoothing)


def _logps(runtime, model, batch) -> np.ndarray:
    """The model's log-probability of each row's completion (2P,), without gradients."""
    targets = runtime.tensor(batch["targets"])
    logits, _ = model(runtime.tensor(batch["idx"]))
    return runtime.to_numpy(runtime.module.sequence_logps(logits, targets, targets != IGNORE_INDEX)).astype(np.float64)


def reference_logps(runtime, model, data: PreferenceData, pad_id: int) -> np.ndarray:
    """The frozen reference's log-probabilities of every row of ``data`` (2P,), in
    evaluation mode and without gradients."""
    model.eval()
    chosen, rejected = [], []
    with runtime.no_grad():
        for i in range(0, len(data), EVAL_PAIRS):
            pairs = list(range(i, min(i + EVAL_PAIRS, len(data))))
            logps = _logps(runtime, model, data.batch(pairs, pad_id, with_reference=False))
            chosen.append(logps[:len(pairs)])
            rejected.append(logps[len(pairs):])
    return np.concatenate(chosen + rejected)


def preference_scores(runtime, model, batches: PreferenceEval) -> dict:
    """On held-out pairs: the mean DPO ``loss``, the ``reward_accuracy`` (chosen reward >
    rejected reward), the mean ``margin`` (chosen - rejected reward), the mean rewards and
    the number of ``pairs``; the model's mode is restored."""
    was_training = model.training
    model.eval()
    losses, chosen, rejected = [], [], []
    try:
        with runtime.no_grad():
            for batch in batches:
                P = len(batch["reference_logps"]) // 2
                logps = runtime.tensor(_logps(runtime, model, batch))
                ref = runtime.tensor(batch["reference_logps"])
                out = runtime.module.dpo_loss(logps[:P], logps[P:], ref[:P], ref[P:], batches.beta,
                                              batches.label_smoothing)
                losses_b, chosen_b, rejected_b = (runtime.to_numpy(x) for x in out)
                losses.append(losses_b), chosen.append(chosen_b), rejected.append(rejected_b)
    finally:
        model.train(was_training)
    losses, chosen, rejected = (np.concatenate(x) for x in (losses, chosen, rejected))
    return {"loss": float(losses.mean()), "reward_accuracy": float((chosen > rejected).mean()),
            "margin": float((chosen - rejected).mean()), "chosen_reward": float(chosen.mean()),
            "rejected_reward": float(rejected.mean()), "pairs": int(len(losses))}


# -- the data -----------------------------------------------------------------------------

def _file_sha(pairs) -> str:
    return sha256("\n".join(json.dumps(p, sort_keys=True) for p in pairs).encode("utf-8"))


def _pairs(data, opts) -> tuple[list, list, dict]:
    """``(train, held_out, dataset record)`` from ``data`` (``None``: the embedded set, else
    the pairs read from ``opts["data"]``'s file)."""
    if data is None:
        train, test = preference_set(opts["n_train"], opts["n_test"], seed=0)
        dataset = generated_dataset(EMBEDDED, {"train": opts["n_train"], "test": opts["n_test"]}, "pairs per task")
        return train, test, dataset
    pairs = list(data)
    check_enough(pairs, "pairs")
    train, test = split_held_out(pairs, opts["held_out"])
    return train, test, {"kind": "preferences", "source": opts["data_source"] or "pairs", "sha256": _file_sha(pairs),
                         "split": {"method": "seeded share", "share": opts["held_out"], "seed": 0, "unit": "pairs",
                                   "sizes": {"train": len(train), "test": len(test)}}}


def _template(tok, pairs) -> str | None:
    """The template pairs are rendered with: the tokenizer's own (an sft run's); else, for
    conversational pairs, minillm's default (which the run then records); strings without
    one are plain text."""
    own = getattr(tok, "chat_template", None)
    if own is None and any(not isinstance(p["prompt"], str) for p in pairs):
        own = DEFAULT_CHAT_TEMPLATE
    return own


def _encode(tok, template, pairs, block_size, source: str | None, what: str) -> tuple[PreferenceData, list, int]:
    """``(encoded, pairs kept, dropped)``. A file's pair longer than the window is an error
    naming its line; the embedded set's (``source`` None) are dropped, counted and said (a
    warning naming ``what``), as SFT drops its long conversations."""
    encoded, kept, dropped = [], [], 0
    for i, pair in enumerate(pairs):
        where = f"{source}, line {pair['line']}" if source is not None else f"embedded pair {i + 1}"
        try:
            encoded.append(encode_pair(tok, template, pair, block_size, where))
        except TooLong:
            if source is not None:
                raise
            dropped += 1
            continue
        kept.append(pair)
    if not kept:
        raise ValueError(f"every one of the {len(pairs)} {what} is longer than block_size + 1 = {block_size + 1} "
                         f"tokens")
    if dropped:
        logger.warning("%d of %d %s have more than block_size + 1 = %d tokens and are dropped", dropped, len(pairs),
                       what, block_size + 1)
    return PreferenceData(encoded), kept, dropped


def _pad_id(tok) -> int:
    pad = getattr(tok, "pad_id", None)
    return 0 if pad is None else int(pad)


# -- the task -----------------------------------------------------------------------------

def _setup(inputs: TaskInputs) -> TaskParts:
    opts, cfg, tc, rt = inputs.options, inputs.run_config.model, inputs.run_config.train, inputs.runtime
    if opts["base"] is None:
        raise ValueError("task 'dpo': expected base=, the run folder of the policy to tune (an sft run); got None")
    src_cfg, state, tok, _ = read_policy(opts["base"], rt.backend)
    diff = _differences(cfg, src_cfg)
    if diff:
        raise ValueError(f"task 'dpo': the run's model config differs from {opts['base']}'s: "
                         f"{{field: (run's, source's)}} = {diff}")
    reference = opts["reference"] or opts["base"]
    ref_state = state
    if opts["reference"] is not None:
        ref_cfg, ref_state, _, _ = read_policy(opts["reference"], rt.backend)
        diff = _differences(cfg, ref_cfg)
        if diff:
            raise ValueError(f"--reference {opts['reference']}: its model config differs from the policy's "
                             f"({opts['base']}): " + ", ".join(f"{k} {a!r} (policy) vs {b!r} (reference)"
                                                                  for k, (a, b) in diff.items()))
    train_pairs, test_pairs, dataset = _pairs(inputs.data, opts)
    template = _template(tok, train_pairs + test_pairs)
    # validation (which chooses checkpoints/best) from the training pairs, never the held-out ones
    train_pairs, validation_pairs = split_held_out(train_pairs, VALIDATION_SHARE, seed=1)
    tok.chat_template = template
    T, pad_id = cfg.block_size, _pad_id(tok)
    where = None if inputs.data is None else str(opts["data_source"] or "the pairs given")
    train, train_pairs, dropped_train = _encode(tok, template, train_pairs, T, where, "training pairs")
    validation, validation_pairs, dropped_validation = _encode(tok, template, validation_pairs, T, where,
                                                               "validation pairs")
    # exact match asks every held-out prompt, as SFT's does (a long one is skipped there, by
    # its rule); the reward accuracy, the pairs that fit the window
    conversations = [{"task": p.get("task", "pairs"), "messages": _conversation(p)} for p in test_pairs]
    held, test_pairs, dropped_test = _encode(tok, template, test_pairs, T, where, "held-out pairs")
    ref_model = getattr(rt.module, "GPT")(cfg, seed=tc.seed)                 # frozen: never trained
    ref_model.load_state_dict(ref_state)
    ref_model = rt.prepare(ref_model)
    with rt.threads():
        train.reference_logps = reference_logps(rt, ref_model, train, pad_id)
        validation.reference_logps = reference_logps(rt, ref_model, validation, pad_id)
        held.reference_logps = reference_logps(rt, ref_model, held, pad_id)
    del ref_model
    beta, eps, alpha = float(opts["beta"]), float(opts["label_smoothing"]), float(opts["rpo_alpha"])
    module = rt.module

    def objective(model, idx, targets, reference_logps):
        return module.dpo_objective(model, idx, targets, reference_logps, beta, eps, alpha)[0]

    contract = data_contract(dataset, tok, T)
    contract["truncation"] = "none: a pair longer than block_size + 1 tokens is an error"
    info = {"source_model": str(Path(opts["base"]).resolve()), "reference_model": str(Path(reference).resolve()),
            "beta": beta, "label_smoothing": eps, "rpo_alpha": alpha,
            "dropped": {"train": dropped_train, "validation": dropped_validation, "test": dropped_test}}
    return TaskParts(PreferenceBatches(train, rank_batch_size(tc.batch_size, rt.world_size), pad_id, tc.seed,
                                       rank=rt.rank, world_size=rt.world_size),
                     _eval_batches(validation, pad_id, beta, eps), contract, tok, info=info,
                     init=lambda model: model.load_state_dict(state),
                     held_out=(_eval_batches(held, pad_id, beta, eps), conversations),
                     data=(train_pairs, test_pairs), objective=objective)


def _conversation(pair) -> list:
    """A pair's prompt and chosen answer as one conversation (what exact match scores)."""
    if isinstance(pair["prompt"], str):
        return [{"role": "user", "content": pair["prompt"]}, {"role": "assistant", "content": pair["chosen"]}]
    return list(pair["prompt"]) + list(pair["chosen"])


def _exact_match(runtime, model, tok, rows, block_size) -> dict:
    from .sft import answer_accuracy
    template = getattr(tok, "chat_template", None)
    if template is None:                          # plain-text pairs: no conversation to answer
        return {}
    return {"exact_match": answer_accuracy(runtime, model, tok, template, rows, block_size)}


def _test(inputs: TaskInputs, parts: TaskParts, model, tok) -> dict:
    held_batches, conversations = parts.held_out
    return {**preference_scores(inputs.runtime, model, held_batches),
            **_exact_match(inputs.runtime, model, tok, conversations, inputs.run_config.model.block_size),
            "split": "test"}


def _evaluate(run, dataset=None, corpus_dir=None, split_name=None, **_) -> dict:
    """``minillm evaluate``: the run's held-out pairs (rebuilt as it recorded them), scored
    against its reference model (loaded again from where the run recorded it)."""
    if dataset is not None or corpus_dir is not None or split_name not in (None, "test"):
        raise ValueError(f"{run.folder}: a dpo run is scored on its own held-out pairs")
    own = dict(run.data.get("dataset") or {})
    split = own.get("split") or {}
    if own.get("kind") == "generated":
        test = preference_set(int(split["sizes"]["train"]), int(split["sizes"]["test"]), seed=split.get("seed", 0))[1]
    else:
        pairs = read_preferences(own["source"])
        if _file_sha(pairs) != own.get("sha256"):
            raise ValueError(f"{own['source']}: the file changed since the run was trained (sha256 differs), so "
                             f"its held-out pairs cannot be rebuilt")
        test = split_held_out(pairs, split["share"], split["seed"])[1]
    rt, tok, cfg = run.runtime, run.tokenizer, run.config
    reference = run.extra.get("reference_model")
    if not reference or not Path(reference).exists():
        raise FileNotFoundError(f"{run.folder}: the rewards are measured against the run's reference model, "
                                f"{reference}, which is no longer there")
    _, ref_state, _, _ = read_policy(reference, rt.backend)
    where = None if own.get("kind") == "generated" else own["source"]
    rows = [{"task": p.get("task", "pairs"), "messages": _conversation(p)} for p in test]   # all, as in _setup
    held, test, _ = _encode(tok, getattr(tok, "chat_template", None), test, cfg.block_size, where,
                            "held-out pairs")
    ref_model = rt.prepare(getattr(rt.module, "GPT")(cfg))
    ref_model.load_state_dict(ref_state)
    pad_id = _pad_id(tok)
    held.reference_logps = reference_logps(rt, ref_model, held, pad_id)
    beta, eps = float(run.extra.get("beta", 0.1)), float(run.extra.get("label_smoothing", 0.0))
    return {**preference_scores(rt, run.model, _eval_batches(held, pad_id, beta, eps)),
            **_exact_match(rt, run.model, tok, rows, cfg.block_size),
            "data": {"source": own.get("source"), "split": "test", "rows": len(test), "runs_own_data": True}}


# defaults of `minillm dpo`: trl's beta 0.1, a low rate (the policy starts where SFT left it)
DPO_TASK = register_task(TaskSpec(
    "dpo", "GPT", _setup, score=preference_scores, best_by=("reward_accuracy", "max"), loss_per="example",
    test=_test, test_best=True, steps=200, lr=5e-4, batch_size=16,
    recipe=lambda steps, lr: {"warmup_steps": min(20, steps // 10), "weight_decay": 0.0},
    options={"base": None, "reference": None, "beta": 0.1, "label_smoothing": 0.0, "rpo_alpha": 0.0, "n_train": 600,
             "n_test": 50, "held_out": 0.05, "data_source": None},
    evaluate=_evaluate, endpoints=(GENERATE, SCORE)))
