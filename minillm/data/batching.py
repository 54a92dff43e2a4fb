"""Batches as NumPy int64 arrays: language-model windows, masked-LM masking, padding.

Dimensions: B batch size (per rank), T block size (sequence length), N corpus length.

Fixes to the chapter's ``create_batches`` (section 5.3): its last batch has targets
shorter than its inputs; here every ``(x, y)`` pair has the same shape (B, T), and
``y[b, t] = x[b, t + 1]`` continued one token past the window:

.. math::  x_{b} = (u_{s_b}, \\dots, u_{s_b + T - 1}), \\qquad y_{b} = (u_{s_b + 1}, \\dots, u_{s_b + T})

Resuming. :class:`LMBatches` computes batch ``step`` from ``(seed, step)`` alone, so a
run restarted at step k sees exactly the batches it would have seen.

Sharding. With ``world_size`` ranks, batch ``step`` is one *global* batch of
``B * world_size`` windows drawn from ``(seed, step)``; rank r takes rows
``r*B .. (r+1)*B - 1``. So the ranks get disjoint rows of the same global batch, and
the union over ranks equals the single-process batch of size ``B * world_size``.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from ..core.config import IGNORE_INDEX  # the targets cross_entropy skips (torch's default ignore_index)


def _as_ids(ids, name: str = "ids") -> np.ndarray:
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of token ids, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer token ids, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _check_rank(rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")


def _check_length(N: int, block_size: int) -> None:
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    if N < block_size + 1:
        raise ValueError(
            f"corpus too short for one window: need at least block_size+1 = {block_size + 1} tokens, got {N}"
        )


def rank_batch_size(batch_size: int, world_size: int) -> int:
    """The rows each rank takes of a global batch of ``batch_size`` rows: ``batch_size /
    world_size``, refused (naming both) where it does not divide, as the ranks must
    take equal parts for their union to be the single-process batch."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if batch_size % world_size:
        raise ValueError(f"the global batch size {batch_size} is not divisible by the world size {world_size}: "
                         f"each of the {world_size} ranks takes batch_size / world_size rows; pass a multiple "
                         f"of {world_size}")
    return batch_size // world_size


def shard(items: Sequence, rank: int, world_size: int) -> list:
    """Rank ``rank``'s part of ``items``: ``items[rank::world_size]``, cut so that every
    rank gets the same number (``len(items) // world_size``); the parts are disjoint."""
    _check_rank(rank, world_size)
    n = len(items) // world_size
    return list(items[rank::world_size][:n])


class LMBatches:
    """Language-model batches; ``batch(step)`` is a pure function of ``(seed, step)``.

    ``sampling="random"``: each row starts at an offset drawn uniformly from
    ``0 .. N - T - 1`` (windows may overlap). ``sampling="epoch"``: the corpus is cut into
    ``(N - 1) // T`` non-overlapping windows, shuffled once per epoch from
    ``(seed, epoch)``; ``steps_per_epoch`` global batches make an epoch (the few windows
    left over are skipped in that epoch).

    Shapes: ``batch(step) -> (x (B, T), y (B, T))``, int64.
    """

    def __init__(self, ids, block_size: int, batch_size: int, seed: int = 0, *,
                 sampling: str = "random", rank: int = 0, world_size: int = 1):
        self.ids = _as_ids(ids)                          # (N,)
        _check_length(len(self.ids), block_size)
        _check_rank(rank, world_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if sampling not in ("random", "epoch"):
            raise ValueError(f"sampling must be 'random' or 'epoch', got {sampling!r}")
        self.block_size, self.batch_size, self.seed = block_size, batch_size, seed
        self.sampling, self.rank, self.world_size = sampling, rank, world_size
        self.n_windows = (len(self.ids) - 1) // block_size
        global_B = batch_size * world_size
        if sampling == "epoch" and self.n_windows < global_B:
            raise ValueError(
                f"sampling='epoch' needs at least batch_size*world_size = {global_B} windows of "
                f"{block_size + 1} tokens, the corpus has {self.n_windows}"
            )

    @property
    def steps_per_epoch(self) -> int:
        """Global batches per pass over the non-overlapping windows."""
        return self.n_windows // (self.batch_size * self.world_size)

    def starts(self, step: int) -> np.ndarray:
        """Start offsets of this rank's rows at ``step``: (B,)."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        B, T, global_B = self.batch_size, self.block_size, self.batch_size * self.world_size
        if self.sampling == "random":
            rng = np.random.default_rng([self.seed, step])
            starts = rng.integers(0, len(self.ids) - T, size=global_B)        # (B * world_size,)
        else:
            epoch, k = divmod(step, self.steps_per_epoch)
            order = np.random.default_rng([self.seed, epoch]).permutation(self.n_windows)
            starts = order[k * global_B:(k + 1) * global_B] * T               # (B * world_size,)
        return starts[self.rank * B:(self.rank + 1) * B].astype(np.int64)     # (B,)

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        starts = self.starts(step)                                            # (B,)
        offsets = starts[:, None] + np.arange(self.block_size + 1)            # (B, T+1)
        window = self.ids[offsets]                                            # (B, T+1)
        return window[:, :-1], window[:, 1:]                                  # (B, T), (B, T)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        step = 0
        while True:
            yield self.batch(step)
            step += 1


class RowBatches:
    """Batches of ``batch_size`` rows drawn at random (with replacement) from arrays that
    share their first axis (N examples): ``batch(step)`` is a pure function of
    ``(seed, step)``, so a resumed run sees the same batches. The (N, T) columns named
    in ``trim`` are cut to the longest real row of the batch (``attention_mask``'s
    widest), so short batches carry no shared padding; a name that is absent is skipped.

    Sharding as :class:`LMBatches`: ``batch_size`` is this rank's rows; step ``step``
    draws one global batch of ``batch_size * world_size`` rows and rank r takes rows
    ``r*B .. (r+1)*B - 1``.
    """

    def __init__(self, arrays: dict, batch_size: int, seed: int = 0,
                 trim: Sequence[str] = ("idx", "attention_mask"), *, rank: int = 0, world_size: int = 1):
        _check_rank(rank, world_size)
        self.arrays, self.batch_size, self.seed, self.trim = arrays, batch_size, seed, tuple(trim)
        self.rank, self.world_size = rank, world_size
        self.n = len(next(iter(arrays.values())))

    def batch(self, step: int) -> dict:
        B = self.batch_size
        rows = np.random.default_rng([self.seed, step]).integers(0, self.n, B * self.world_size)
        rows = rows[self.rank * B:(self.rank + 1) * B]                     # this rank's part
        out = {k: a[rows] for k, a in self.arrays.items()}
        width = int(out["attention_mask"].sum(axis=1).max())               # trim shared padding
        for key in self.trim:
            if key in out:
                out[key] = out[key][:, :width]
        return out


def sequential_batches(ids, block_size: int, batch_size: int, *, rank: int = 0, world_size: int = 1,
                       drop_last: bool = False, tail: str = "drop",
                       ignore_index: int = IGNORE_INDEX) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One pass over the corpus in order, for evaluation: yields ``(x (b, T), y (b, T))``.

    Windows start at 0, T, 2T, ... and never overlap, so each target is predicted once.
    Every window is full (T tokens, T targets); only the number of rows b of the last
    batch may be smaller than ``batch_size`` (unless ``drop_last``).

    The last ``(N - 1) mod T`` targets do not fit a full window. ``tail="drop"`` leaves
    them out; ``tail="overlap"`` adds one more window ending at the last token, whose
    already counted targets are ``ignore_index``, so every target counts exactly once.
    With ``world_size > 1`` window i goes to rank ``i % world_size`` (see :func:`shard`).
    """
    ids = _as_ids(ids)
    N, T = len(ids), block_size
    _check_length(N, T)
    _check_rank(rank, world_size)
    if tail not in ("drop", "overlap"):
        raise ValueError(f"tail must be 'drop' or 'overlap', got {tail!r}")
    n_full = (N - 1) // T
    starts = [i * T for i in range(n_full)]
    covered = n_full * T                                   # targets 1 .. covered are counted
    tail_start = N - 1 - T if tail == "overlap" and covered < N - 1 else None
    if tail_start is not None:
        starts.append(tail_start)
    starts = shard(starts, rank, world_size) if world_size > 1 else starts
    for k in range(0, len(starts), batch_size):
        rows = np.asarray(starts[k:k + batch_size], dtype=np.int64)            # (b,)
        if drop_last and len(rows) < batch_size:
            return
        window = ids[rows[:, None] + np.arange(T + 1)]                        # (b, T+1)
        x, y = window[:, :-1], window[:, 1:].copy()                           # (b, T), (b, T)
        for r, s in enumerate(rows):
            if s == tail_start:                            # its first targets were counted before
                y[r, : covered - s] = ignore_index
        yield x, y


def mask_tokens(ids, rng: np.random.Generator, mask_id: int, vocab_size: int,
                special_ids: Sequence[int] = (), p: float = 0.15,
                ignore_index: int = IGNORE_INDEX) -> tuple[np.ndarray, np.ndarray]:
    """Masked-LM corruption (BERT, Devlin et al. 2019, section 3.1).

    Each token that is not special is selected with probability p. A selected token's
    target is its id; every other target is ``ignore_index``. A selected input becomes
    <mask> with probability 0.8, a random ordinary (non-special) token with 0.1, and
    stays unchanged with 0.1.

    Shapes: ids (...,) -> (inputs (...,), targets (...,)), int64.
    """
    ids = np.asarray(ids)
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"ids must be integer token ids, got dtype {ids.dtype}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    special = np.asarray(sorted(set(int(s) for s in special_ids) | {int(mask_id)}), dtype=np.int64)
    ordinary = np.setdiff1d(np.arange(vocab_size), special)                # ids a random swap may use
    if len(ordinary) == 0:
        raise ValueError(f"vocab_size={vocab_size} leaves no ordinary token besides the specials {special.tolist()}")
    ids = ids.astype(np.int64)
    selected = (rng.random(ids.shape) < p) & ~np.isin(ids, special)         # (...,)
    action = rng.random(ids.shape)                                          # (...,)
    random_ids = ordinary[rng.integers(0, len(ordinary), size=ids.shape)]  # (...,)
    inputs = ids.copy()
    inputs[selected & (action < 0.8)] = mask_id
    swap = selected & (action >= 0.8) & (action < 0.9)
    inputs[swap] = random_ids[swap]
    targets = np.where(selected, ids, ignore_index).astype(np.int64)        # (...,)
    return inputs, targets


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int, max_len: int | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad sequences into ``(ids (B, T), mask (B, T))``; mask is True at real tokens.

    T = ``max_len`` if given (longer sequences keep their first ``max_len`` tokens),
    else the longest sequence.
    """
    if len(seqs) == 0:
        raise ValueError("pad_batch needs at least one sequence, got none")
    lengths = [len(s) for s in seqs]
    if max_len is not None and max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    T = max(max(lengths), 1) if max_len is None else max_len
    ids = np.full((len(seqs), T), pad_id, dtype=np.int64)                  # (B, T)
    mask = np.zeros((len(seqs), T), dtype=bool)                              # (B, T)
    for b, s in enumerate(seqs):
        n = min(len(s), T)
        ids[b, :n] = np.asarray(s[:n], dtype=np.int64)
        mask[b, :n] = True
    return ids, mask


def classification_batches(seqs: Sequence[Sequence[int]], labels: Sequence[int], batch_size: int,
                           pad_id: int, *, max_len: int | None = None, seed: int | None = None,
                           epoch: int = 0, rank: int = 0, world_size: int = 1, drop_last: bool = False,
                           ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """One epoch of ``(ids (b, T), mask (b, T), labels (b,))``.

    ``seed=None`` keeps the given order (evaluation); otherwise the order is the
    permutation drawn from ``(seed, epoch)``, a pure function so training resumes
    exactly. With ``world_size > 1`` each rank takes :func:`shard` of that order.
    """
    if len(seqs) != len(labels):
        raise ValueError(f"got {len(seqs)} sequences but {len(labels)} labels")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = np.arange(len(seqs)) if seed is None else np.random.default_rng([seed, epoch]).permutation(len(seqs))
    order = shard(order, rank, world_size)
    for k in range(0, len(order), batch_size):
        rows = order[k:k + batch_size]
        if drop_last and len(rows) < batch_size:
            return
        ids, mask = pad_batch([seqs[i] for i in rows], pad_id, max_len)    # (b, T), (b, T)
        yield ids, mask, np.asarray([labels[i] for i in rows], dtype=np.int64)
