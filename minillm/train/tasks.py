"""The three training tasks as batch sources: ``batch(step) -> model keyword arguments``.

Each source is a pure function of ``(seed, step)`` (and of the rank under distributed
training, where each rank reads its own shard), so a resumed run sees exactly the
batches an uninterrupted one would have seen. ``batch_size`` is the global batch: with
``world_size`` ranks each takes ``batch_size / world_size`` rows of the one batch a
single process would draw (:func:`~minillm.data.batching.rank_batch_size` refuses a
batch the ranks cannot share equally), and :func:`counted` is what the step's loss is
normalised by across the ranks.

- :class:`CausalLMData` — GPT pretraining: ``{"idx": x, "targets": y}`` with y = x
  shifted by one, both (B, T); no ragged last batch.
- :class:`MaskedLMData` — encoder pretraining (BERT's objective): windows of the
  corpus, 15% of tokens selected, 80/10/10 <mask>/random/unchanged, targets -100
  elsewhere.
- :class:`ClassificationData` — fine-tuning: padded sequences, their padding mask and
  labels, reshuffled every epoch from ``(seed, epoch)``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..core.config import IGNORE_INDEX
from ..data.batching import (LMBatches, classification_batches, mask_tokens, pad_batch, rank_batch_size,
                             sequential_batches, shard)

__all__ = ["CausalLMData", "MaskedLMData", "ClassificationData", "counted",
           "causal_lm_eval_batches", "masked_lm_eval_batches", "classification_eval_batches"]


def counted(batch) -> int:
    """The items a batch's mean loss divides by: the pairs of a preference batch (DPO: two
    rows each), the targets that are not ``-100`` (causal and masked LM, translation), else
    the rows (classification, QA: one label or one answer span per row). A distributed step divides each rank's summed loss by these,
    summed over the ranks (:class:`~minillm.train.collaborators.Distribution`)."""
    if "reference_logps" in batch:
        return int(np.asarray(batch["idx"]).shape[0]) // 2
    if "targets" in batch:
        return int(np.count_nonzero(np.asarray(batch["targets"]) != IGNORE_INDEX))
    return int(np.asarray(batch["idx"]).shape[0])


class CausalLMData:
    """Random windows of ``ids`` for next-token prediction; ``batch_size`` is global."""

    def __init__(self, ids, block_size: int, batch_size: int, seed: int = 0, *,
                 rank: int = 0, world_size: int = 1):
        self.windows = LMBatches(ids, block_size, rank_batch_size(batch_size, world_size), seed,
                                 rank=rank, world_size=world_size)

    def batch(self, step: int) -> dict:
        x, y = self.windows.batch(step)                    # (B, T), (B, T)
        return {"idx": x, "targets": y}


class MaskedLMData:
    """Random windows of ``ids``, corrupted for masked-LM training; ``batch_size`` is global.

    The masks are drawn for the whole global batch from ``(seed, step)`` (the same on
    every rank), then each rank takes its rows: so masks too are a pure function of the
    step, and the ranks' batches together are the single-process batch, masks included.
    """

    def __init__(self, ids, block_size: int, batch_size: int, *, mask_id: int, vocab_size: int,
                 special_ids: Sequence[int], seed: int = 0, p: float = 0.15,
                 rank: int = 0, world_size: int = 1):
        self.rows = rank_batch_size(batch_size, world_size)
        self.windows = LMBatches(ids, block_size, batch_size, seed)          # the global batch
        self.mask_id, self.vocab_size, self.special_ids = mask_id, vocab_size, tuple(special_ids)
        self.seed, self.p, self.rank = seed, p, rank

    def batch(self, step: int) -> dict:
        x, _ = self.windows.batch(step)                    # (B * world_size, T)
        rng = np.random.default_rng([self.seed, step, 0, 1])   # one draw for all ranks (rank 0's stream)
        inputs, targets = mask_tokens(x, rng, self.mask_id, self.vocab_size, self.special_ids, self.p)
        mine = slice(self.rank * self.rows, (self.rank + 1) * self.rows)
        return {"idx": inputs[mine], "targets": targets[mine]}   # (B, T), (B, T)


class ClassificationData:
    """Labelled sequences in shuffled, padded batches; ``batch_size`` is global.

    Step ``s`` is batch ``s % steps_per_epoch`` of epoch ``s // steps_per_epoch``, the
    epoch's order drawn from ``(seed, epoch)``; incomplete last batches are dropped, so
    every batch has ``batch_size`` rows (``batch_size / world_size`` on each rank).
    """

    def __init__(self, seqs: Sequence[Sequence[int]], labels: Sequence[int], batch_size: int, *,
                 pad_id: int, max_len: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        if len(seqs) != len(labels):
            raise ValueError(f"got {len(seqs)} sequences but {len(labels)} labels")
        global_batch, batch_size = batch_size, rank_batch_size(batch_size, world_size)
        per_rank = len(seqs) // world_size
        if per_rank < batch_size:
            raise ValueError(f"need at least batch_size = {global_batch} labelled examples, got {len(seqs)}")
        self.seqs, self.labels, self.batch_size = list(seqs), list(labels), batch_size
        self.pad_id, self.max_len, self.seed = pad_id, max_len, seed
        self.rank, self.world_size = rank, world_size
        self.steps_per_epoch = per_rank // batch_size

    def batch(self, step: int) -> dict:
        epoch, k = divmod(step, self.steps_per_epoch)
        # the same order classification_batches(seed=..., epoch=...) walks through
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.seqs))
        rows = shard(order, self.rank, self.world_size)[k * self.batch_size:(k + 1) * self.batch_size]
        ids, mask = pad_batch([self.seqs[i] for i in rows], self.pad_id, self.max_len)  # (B, T), (B, T)
        labels = np.asarray([self.labels[i] for i in rows], dtype=np.int64)           # (B,)
        return {"idx": ids, "labels": labels, "attention_mask": mask}


def causal_lm_eval_batches(ids, block_size: int, batch_size: int) -> list[dict]:
    """One in-order pass over ``ids``: every token after the first is a target exactly once.

    Windows of T = ``block_size`` tokens start at 0, T, 2T, ...; the last ``(N-1) mod T``
    targets, which no full window reaches, are scored by one more window ending at the
    last token, whose already scored targets are ``-100`` (``tail="overlap"`` of
    :func:`~minillm.data.batching.sequential_batches`). A split shorter than a window
    (N - 1 < T) is one window of its N - 1 targets. So the counted targets of the batches
    are exactly the N - 1 tokens ``ids[1:]``.
    """
    ids = np.asarray(ids, dtype=np.int64)
    if ids.ndim != 1 or len(ids) < 2:
        raise ValueError(f"causal-LM evaluation needs a 1-D split of at least 2 tokens (one target), "
                         f"got shape {ids.shape}")
    T = min(block_size, len(ids) - 1)                   # a short split: one window of N - 1 targets
    return [{"idx": x, "targets": y}
            for x, y in sequential_batches(ids, T, batch_size, tail="overlap")]


def masked_lm_eval_batches(ids, block_size: int, batch_size: int, *, mask_id: int, vocab_size: int,
                           special_ids: Sequence[int], seed: int = 0, p: float = 0.15) -> list[dict]:
    """Non-overlapping windows of ``ids`` with one fixed (seeded) masking, every token of
    the split a candidate for masking exactly once.

    The whole split is masked at once (``mask_tokens`` on the (N,) sequence, from
    ``(seed, 2)``), then cut into windows of T = ``block_size`` at 0, T, 2T, ...; the
    last ``N mod T`` tokens are scored by one more window ending at the last token,
    whose already scored positions are ``-100``. A split shorter than a window is one
    window of N tokens.
    """
    ids = np.asarray(ids, dtype=np.int64)
    if ids.ndim != 1 or len(ids) == 0:
        raise ValueError(f"masked-LM evaluation needs a 1-D split of at least 1 token, got shape {ids.shape}")
    N, T = len(ids), min(block_size, len(ids))
    rng = np.random.default_rng([seed, 2])
    inputs, targets = mask_tokens(ids, rng, mask_id, vocab_size, special_ids, p)   # (N,), (N,)
    n_full = N // T
    starts = [i * T for i in range(n_full)]
    rows_in, rows_out = [inputs[s:s + T] for s in starts], [targets[s:s + T] for s in starts]
    if n_full * T < N:                                  # the tail: one window ending at the last token
        tail = targets[N - T:].copy()                                   # (T,)
        tail[: n_full * T - (N - T)] = IGNORE_INDEX                     # scored by the full windows
        rows_in.append(inputs[N - T:])
        rows_out.append(tail)
    x, y = np.stack(rows_in), np.stack(rows_out)                        # (n, T), (n, T)
    return [{"idx": x[i:i + batch_size], "targets": y[i:i + batch_size]} for i in range(0, len(x), batch_size)]


def classification_eval_batches(seqs, labels, batch_size: int, *, pad_id: int, max_len: int) -> list[dict]:
    """All examples in order (no shuffling, the last batch may be smaller)."""
    return [{"idx": ids, "labels": y, "attention_mask": mask}
            for ids, mask, y in classification_batches(seqs, labels, batch_size, pad_id, max_len=max_len)]

