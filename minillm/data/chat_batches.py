"""Batches of encoded conversations (:mod:`.conversations`) for SFT, padded or packed.

Each conversation is ``ids`` (n,) and ``targets`` (n - 1,); the model reads ``ids[:-1]``.

- padding: a row holds one conversation, right-padded with ``pad_id`` (targets
  ``IGNORE_INDEX``) to the longest of the batch; a causal model never reads the padding
  after a token, so nothing else is needed.
- packing: a row holds several conversations one after another, up to ``block_size``
  positions, with ``segment_ids`` (B, T) saying which is which: the model keeps attention
  inside each and restarts its positions (``GPT.forward(..., segment_ids=...)``), so each
  conversation is computed as alone while far fewer positions are padding. The rest of a
  row is padding, a segment of its own.

``batch(step)`` is a pure function of ``(seed, step)`` (a resumed run sees the same
batches): the conversations are drawn at random with replacement; packed, they fill the
rows in the order drawn, a conversation that does not fit the row closing it. Sharding as
:class:`~minillm.data.batching.RowBatches`: each rank takes its rows of the global batch.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..core.config import IGNORE_INDEX
from .batching import _check_rank

__all__ = ["ConversationBatches", "conversation_eval_batches", "pad_conversations"]


def pad_conversations(ids: Sequence[np.ndarray], targets: Sequence[np.ndarray], pad_id: int) -> dict:
    """One conversation a row, right-padded to the longest: ``{"idx", "targets"}`` (B, T)."""
    T = max(len(x) - 1 for x in ids)
    idx = np.full((len(ids), T), pad_id, dtype=np.int64)                     # (B, T)
    y = np.full((len(ids), T), IGNORE_INDEX, dtype=np.int64)                 # (B, T)
    for b, (x, t) in enumerate(zip(ids, targets)):
        idx[b, :len(x) - 1], y[b, :len(t)] = x[:-1], t
    return {"idx": idx, "targets": y}


def _pack_rows(order, ids, targets, n_rows: int, block_size: int, pad_id: int) -> dict:
    """Fill ``n_rows`` rows of ``block_size`` positions with the conversations of ``order``
    in turn: ``{"idx", "targets", "segment_ids"}`` (B, T)."""
    idx = np.full((n_rows, block_size), pad_id, dtype=np.int64)              # (B, T)
    y = np.full((n_rows, block_size), IGNORE_INDEX, dtype=np.int64)          # (B, T)
    seg = np.zeros((n_rows, block_size), dtype=np.int64)                     # (B, T)
    row, at, k = 0, 0, 0
    for i in order:
        n = len(ids[i]) - 1                                                  # positions it takes
        if at + n > block_size:                                              # close the row: its rest pads
            seg[row, at:] = k
            row, at, k = row + 1, 0, 0
            if row == n_rows:
                break
        idx[row, at:at + n], y[row, at:at + n], seg[row, at:at + n] = ids[i][:-1], targets[i], k
        at, k = at + n, k + 1
    if row < n_rows:
        seg[row, at:] = k
    return {"idx": idx, "targets": y, "segment_ids": seg}


class ConversationBatches:
    """Training batches of conversations (module docstring); ``batch_size`` is this rank's
    rows, ``packing`` packs them into rows of ``block_size`` positions."""

    def __init__(self, ids, targets, batch_size: int, block_size: int, pad_id: int, seed: int = 0, *,
                 packing: bool = False, rank: int = 0, world_size: int = 1):
        _check_rank(rank, world_size)
        longest = max(len(x) - 1 for x in ids)
        if longest > block_size:
            raise ValueError(f"expected conversations of at most block_size + 1 = {block_size + 1} tokens, "
                             f"got one of {longest + 1}")
        self.ids, self.targets = list(ids), list(targets)
        self.batch_size, self.block_size, self.pad_id, self.seed = batch_size, block_size, pad_id, seed
        self.packing, self.rank, self.world_size = packing, rank, world_size

    def batch(self, step: int) -> dict:
        B, R = self.batch_size, self.batch_size * self.world_size
        rng = np.random.default_rng([self.seed, step])
        mine = slice(self.rank * B, (self.rank + 1) * B)
        if not self.packing:
            rows = rng.integers(0, len(self.ids), R)[mine]
            return pad_conversations([self.ids[i] for i in rows], [self.targets[i] for i in rows], self.pad_id)
        # enough draws to fill every row: a row holds at most block_size conversations
        order = rng.integers(0, len(self.ids), R * self.block_size)
        packed = _pack_rows(order, self.ids, self.targets, R, self.block_size, self.pad_id)
        return {k: v[mine] for k, v in packed.items()}


def conversation_eval_batches(ids, targets, batch_size: int, pad_id: int) -> list[dict]:
    """Every conversation once, in order, padded (validation)."""
    return [pad_conversations(ids[i:i + batch_size], targets[i:i + batch_size], pad_id)
            for i in range(0, len(ids), batch_size)]
