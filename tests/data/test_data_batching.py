"""Batching (minillm/data/batching.py): declared shapes, pure in (seed, step), sharding,
sequential evaluation coverage, masked-LM rates, padding."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from minillm.data import (IGNORE_INDEX, LMBatches, RowBatches, classification_batches, mask_tokens, pad_batch,
                          sequential_batches, shard)

lm_setups = st.tuples(st.integers(1, 16), st.integers(1, 6), st.integers(0, 200)).flatmap(
    lambda tbe: st.tuples(st.integers(tbe[0] + 1, tbe[0] + 300), st.just(tbe[0]), st.just(tbe[1]),
                          st.integers(0, 2**32 - 1), st.just(tbe[2])))


@given(lm_setups)
def test_random_windows_have_declared_shapes_and_shifted_targets(setup):
    N, T, B, seed, step = setup
    ids = np.arange(N) * 3                                    # distinct values reveal positions
    x, y = LMBatches(ids, T, B, seed).batch(step)
    assert x.shape == y.shape == (B, T) and x.dtype == y.dtype == np.int64
    starts = x[:, 0] // 3
    assert ((starts >= 0) & (starts + T + 1 <= N)).all()
    np.testing.assert_array_equal(x, ids[starts[:, None] + np.arange(T)])      # contiguous windows
    np.testing.assert_array_equal(y, ids[starts[:, None] + np.arange(1, T + 1)])


@given(lm_setups, st.sampled_from(["random", "epoch"]))
def test_batch_is_a_pure_function_of_seed_and_step(setup, sampling):
    N, T, B, seed, step = setup
    if (N - 1) // T < B:
        sampling = "random"
    a = LMBatches(np.arange(N), T, B, seed, sampling=sampling)
    b = LMBatches(np.arange(N), T, B, seed, sampling=sampling)
    for s in (step, step + 1, 0):                             # any order of calls, fresh objects
        np.testing.assert_array_equal(a.batch(s)[0], b.batch(s)[0])
    np.testing.assert_array_equal(a.batch(step)[0], a.batch(step)[0])


def test_resuming_gives_the_batches_of_the_uninterrupted_run():
    ids = np.random.default_rng(0).integers(0, 50, size=5000)
    full = [LMBatches(ids, 32, 8, seed=7).batch(s)[0] for s in range(20)]
    resumed = LMBatches(ids, 32, 8, seed=7)                   # "restarted" at step 12
    for s in range(12, 20):
        np.testing.assert_array_equal(resumed.batch(s)[0], full[s])
    other_seed = LMBatches(ids, 32, 8, seed=8).batch(0)[0]
    assert not np.array_equal(other_seed, full[0])


@pytest.mark.parametrize("sampling", ["random", "epoch"])
@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_take_disjoint_rows_of_the_single_process_global_batch(sampling, world_size):
    ids, T, B = np.arange(1000), 8, 4
    single = LMBatches(ids, T, B * world_size, seed=3, sampling=sampling)
    for step in (0, 5, 30):
        parts = [LMBatches(ids, T, B, seed=3, sampling=sampling, rank=r, world_size=world_size).batch(step)[0]
                 for r in range(world_size)]
        np.testing.assert_array_equal(np.concatenate(parts), single.batch(step)[0])


def test_epoch_sampling_visits_each_window_once_per_epoch():
    T, B = 5, 3
    batches = LMBatches(np.arange(101), T, B, seed=1, sampling="epoch")      # 20 windows, 6 steps/epoch
    assert batches.steps_per_epoch == 6
    for epoch in range(2):
        starts = np.concatenate([batches.starts(epoch * 6 + k) for k in range(6)])
        assert len(set(starts.tolist())) == 18 and all(s % T == 0 for s in starts)
    first, second = (np.concatenate([batches.starts(e * 6 + k) for k in range(6)]) for e in range(2))
    assert not np.array_equal(first, second), "each epoch is shuffled anew"


@given(st.integers(1, 12), st.integers(1, 5), st.integers(0, 150), st.sampled_from(["drop", "overlap"]),
       st.booleans())
def test_sequential_pass_has_full_windows_and_counts_each_target_once(T, B, extra, tail, drop_last):
    N = T + 1 + extra
    ids = np.arange(N)
    counted = []
    for x, y in sequential_batches(ids, T, B, tail=tail, drop_last=drop_last):
        assert x.shape == y.shape and x.shape[1] == T and 1 <= x.shape[0] <= B
        assert not drop_last or x.shape[0] == B
        keep = y != IGNORE_INDEX
        np.testing.assert_array_equal(y[keep], (x + 1)[keep])
        counted.extend(y[keep].tolist())
    assert len(counted) == len(set(counted)), "a target was counted twice"
    n_full = (N - 1) // T
    if not drop_last:
        expected = set(range(1, N)) if tail == "overlap" else set(range(1, n_full * T + 1))
        assert set(counted) == expected


def test_sequential_shards_are_disjoint_and_equal_sized():
    ids = np.arange(400)
    rows = {r: np.concatenate([x for x, _ in sequential_batches(ids, 10, 4, rank=r, world_size=3)])
            for r in range(3)}
    assert len({len(v) for v in rows.values()}) == 1
    starts = [set(v[:, 0].tolist()) for v in rows.values()]
    assert not (starts[0] & starts[1] or starts[0] & starts[2] or starts[1] & starts[2])


def test_too_short_corpus_and_bad_arguments_are_explained():
    with pytest.raises(ValueError, match=r"need at least block_size\+1 = 9 tokens, got 5"):
        LMBatches(np.arange(5), 8, 2)
    with pytest.raises(ValueError, match=r"need at least block_size\+1 = 9 tokens, got 8"):
        next(sequential_batches(np.arange(8), 8, 2))
    with pytest.raises(ValueError, match="need 0 <= rank < world_size, got rank=2, world_size=2"):
        LMBatches(np.arange(100), 8, 2, rank=2, world_size=2)
    with pytest.raises(ValueError, match="1-D sequence of token ids, got shape"):
        LMBatches(np.zeros((3, 40), dtype=int), 8, 2)
    with pytest.raises(ValueError, match="needs at least batch_size\\*world_size = 4 windows"):
        LMBatches(np.arange(20), 8, 4, sampling="epoch")


def test_masking_rates_are_within_binomial_bounds():
    """15 % selected; of those 80 % <mask>, 10 % random, 10 % unchanged.

    Tolerance: 5 binomial standard deviations, sqrt(p(1-p)/n) (a false alarm has
    probability < 1e-6 per check), with n = 400 000 tokens (60 000 selected).
    """
    V, mask_id, specials = 50, 4, tuple(range(7))
    rng = np.random.default_rng(0)
    ids = rng.integers(0, V, size=(400, 1000))                              # (B, T)
    inputs, targets = mask_tokens(ids, np.random.default_rng(1), mask_id, V, specials)
    assert inputs.shape == targets.shape == ids.shape and targets.dtype == np.int64
    ordinary = ~np.isin(ids, specials)
    selected = targets != IGNORE_INDEX

    def within(count, n, p):
        return abs(count / n - p) <= 5 * np.sqrt(p * (1 - p) / n)

    assert not (selected & ~ordinary).any(), "a special token was selected"
    np.testing.assert_array_equal(targets[selected], ids[selected])
    np.testing.assert_array_equal(inputs[~selected], ids[~selected])
    n_sel = selected.sum()
    assert within(n_sel, ordinary.sum(), 0.15)
    n_ord_ids = V - len(specials)                           # a random swap may draw the original id
    masked = (inputs == mask_id) & selected
    swapped = (inputs != mask_id) & (inputs != ids) & selected
    assert within(masked.sum(), n_sel, 0.8)
    assert within(swapped.sum(), n_sel, 0.1 * (1 - 1 / n_ord_ids))
    assert not np.isin(inputs[swapped], specials).any(), "a random replacement was a special token"


@given(st.lists(st.lists(st.integers(7, 99), max_size=12), min_size=1, max_size=6),
       st.none() | st.integers(1, 10))
def test_pad_batch_shapes_and_mask(seqs, max_len):
    ids, mask = pad_batch(seqs, pad_id=0, max_len=max_len)
    T = max_len if max_len is not None else max(1, max(map(len, seqs)))
    assert ids.shape == mask.shape == (len(seqs), T) and ids.dtype == np.int64 and mask.dtype == bool
    for b, s in enumerate(seqs):
        n = min(len(s), T)
        assert ids[b, :n].tolist() == s[:n] and mask[b, :n].all()
        assert (ids[b, n:] == 0).all() and not mask[b, n:].any()


def test_classification_batches_cover_the_epoch_and_shard():
    seqs = [[7 + i] * (1 + i % 5) for i in range(23)]
    labels = [i % 3 for i in range(23)]
    seen = []
    for ids, mask, y in classification_batches(seqs, labels, 4, pad_id=0, seed=5, epoch=2):
        assert ids.shape == mask.shape and ids.shape[0] == y.shape[0] <= 4 and y.dtype == np.int64
        rows = ids[:, 0] - 7
        np.testing.assert_array_equal(y, rows % 3)                          # labels stay with their texts
        np.testing.assert_array_equal(mask.sum(axis=1), 1 + rows % 5)
        seen.extend(rows.tolist())
    assert sorted(seen) == list(range(23))
    def order(epoch):
        return np.concatenate([ids[:, 0] for ids, _, _ in classification_batches(seqs, labels, 4, 0, seed=5, epoch=epoch)])
    np.testing.assert_array_equal(order(2), order(2))                       # pure in (seed, epoch)
    assert not np.array_equal(order(2), order(3))
    ranks = [{int(r) for ids, _, _ in classification_batches(seqs, labels, 4, 0, seed=5, rank=k, world_size=2)
              for r in ids[:, 0]} for k in range(2)]
    assert not ranks[0] & ranks[1] and len(ranks[0]) == len(ranks[1]) == 11
    with pytest.raises(ValueError, match="got 23 sequences but 2 labels"):
        next(classification_batches(seqs, [0, 1], 4, 0))


@given(st.lists(st.integers(), max_size=40), st.integers(1, 5))
def test_shard_parts_are_disjoint_equal_and_cover_all_but_the_remainder(items, world_size):
    parts = [shard(list(enumerate(items)), r, world_size) for r in range(world_size)]
    flat = [i for p in parts for i, _ in p]
    assert len(flat) == len(set(flat)) == world_size * (len(items) // world_size)
    assert len({len(p) for p in parts}) == 1


def test_row_batches_are_pure_draw_whole_rows_and_trim_only_the_named_columns():
    lengths = np.array([2, 5, 3, 1])
    mask = np.arange(6)[None, :] < lengths[:, None]                    # (4, 6)
    idx = np.where(mask, np.arange(4)[:, None] * 10 + np.arange(6), 0)
    arrays = {"idx": idx, "attention_mask": mask, "other": idx.copy(), "label": np.arange(4)}
    data = RowBatches(arrays, batch_size=8, seed=3, trim=("idx", "attention_mask", "absent"))
    for step in range(5):
        b = data.batch(step)
        assert all(np.array_equal(b[k], data.batch(step)[k]) for k in b)   # a function of the step
        rows = b["label"]
        width = int(lengths[rows].max())
        assert b["idx"].shape == b["attention_mask"].shape == (8, width)
        assert np.array_equal(b["idx"], idx[rows, :width]) and np.array_equal(b["attention_mask"], mask[rows, :width])
        assert np.array_equal(b["other"], idx[rows])                        # not named: untouched
    assert not np.array_equal(data.batch(0)["label"], data.batch(1)["label"])
    assert not np.array_equal(data.batch(0)["label"], RowBatches(arrays, 8, seed=4).batch(0)["label"])
