"""minillm.train.sampling: greedy, top-k, top-p, temperature, and the draws themselves."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from minillm.train.sampling import (filter_logits, next_token_probs, sample_next, top_k_filter,
                                    top_p_filter)

# Logits drawn from a small grid so that ties are common (the hard case for top-k/top-p).
logit_values = st.sampled_from([-3.0, -1.0, 0.0, 0.5, 1.0, 2.0, 7.0])
logits_2d = hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 9)),
                       elements=logit_values)


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@given(logits_2d)
def test_greedy_is_argmax_with_ties_to_lowest_id(logits):
    got = sample_next(logits, temperature=0)
    want = np.array([min(np.flatnonzero(row == row.max())) for row in logits])
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.int64 and got.shape == logits.shape[:1]


@given(logits_2d, st.integers(0, 2**32 - 1), st.sampled_from([0.3, 1.0, 2.5]))
def test_top_k_1_is_greedy_at_any_temperature(logits, seed, temperature):
    got = sample_next(logits, temperature=temperature, top_k=1, rng=np.random.default_rng(seed))
    np.testing.assert_array_equal(got, sample_next(logits, temperature=0))


@given(logits_2d, st.integers(1, 12))
def test_top_k_filter_keeps_the_k_largest(logits, k):
    out = top_k_filter(logits, k)
    for row, kept_row in zip(logits, out):
        kept = np.isfinite(kept_row)
        assert kept.sum() == min(k, row.size)
        np.testing.assert_array_equal(kept_row[kept], row[kept])  # kept logits unchanged
        if not kept.all():
            assert row[kept].min() >= row[~kept].max()  # nothing dropped beats a kept one
            # ties at the boundary: the kept ones have the lower ids
            boundary = row[kept].min()
            tied = np.flatnonzero(row == boundary)
            assert np.all(np.diff(kept[tied].astype(int)) <= 0)


@given(logits_2d, st.floats(0.01, 1.0))
def test_top_p_filter_keeps_the_smallest_set_reaching_p(logits, p):
    out = top_p_filter(logits, p)
    for row, kept_row in zip(logits, out):
        pi = _softmax(row)
        kept = np.isfinite(kept_row)
        assert kept.any()
        mass = pi[kept].sum()
        # float64 sums of <= 9 probabilities: rounding ~1e-15, bound 1e-12
        assert mass >= p - 1e-12 or kept.all(), (mass, p)
        if not kept.all():
            assert pi[kept].min() >= pi[~kept].max()  # most likely first
            # smallest: without its least likely member the kept set falls short of p
            assert mass - pi[kept].min() < p + 1e-12


@given(logits_2d, st.integers(0, 2**32 - 1), st.sampled_from([0.25, 1.0, 3.0]),
       st.one_of(st.none(), st.integers(1, 5)), st.one_of(st.none(), st.floats(0.05, 1.0)))
def test_samples_never_leave_the_kept_set(logits, seed, temperature, top_k, top_p):
    kw = dict(temperature=temperature, top_k=top_k, top_p=top_p)
    z = filter_logits(logits, **kw)
    pi = next_token_probs(logits, **kw)
    for draw in range(4):
        tokens = sample_next(logits, rng=np.random.default_rng([seed, draw]), **kw)
        rows = np.arange(len(logits))
        assert np.all(np.isfinite(z[rows, tokens])) and np.all(pi[rows, tokens] > 0)
        if top_k is not None:
            assert np.all(np.isfinite(top_k_filter(logits, top_k)[rows, tokens]))


def test_empirical_frequencies_match_the_filtered_distribution():
    logits = np.array([2.0, 1.0, 1.0, 0.2, -1.0, -4.0, 0.0])
    kw = dict(temperature=0.8, top_k=5, top_p=0.9)
    pi = next_token_probs(logits, **kw)
    assert np.count_nonzero(pi) == 4 and pi.sum() == pytest.approx(1.0, abs=1e-12)
    N = 40_000
    batch = np.broadcast_to(logits, (N, logits.size))  # one draw per row, one rng call
    tokens = sample_next(batch, rng=np.random.default_rng(1234), **kw)
    counts = np.bincount(tokens, minlength=logits.size)
    # Each count is Binomial(N, pi_i): within 5 standard deviations the chance of a false
    # failure is < 6e-7 per cell (and the seed is fixed, so the test is deterministic).
    bound = 5 * np.sqrt(N * pi * (1 - pi)) + 1
    assert np.all(np.abs(counts - N * pi) <= bound), (counts, N * pi, bound)
    assert np.all(counts[pi == 0] == 0)  # filtered-out tokens are never drawn


def test_same_seed_same_tokens_and_one_rng_call_per_step():
    logits = np.random.default_rng(0).normal(size=(8, 50))
    a = sample_next(logits, temperature=1.3, top_p=0.8, rng=np.random.default_rng(7))
    b = sample_next(logits.astype(np.float32), temperature=1.3, top_p=0.8,
                    rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    rng, twin = np.random.default_rng(7), np.random.default_rng(7)
    sample_next(logits, rng=rng)
    twin.random(8)
    assert rng.random() == twin.random()  # exactly one rng.random(batch_shape) was used
    c = sample_next(logits, temperature=1.3, top_p=0.8, rng=np.random.default_rng(8))
    assert not np.array_equal(a, c)  # and a different seed does change the draw


def test_a_generator_per_row_draws_what_each_row_draws_alone():
    """DecodeBatch samples its rows in one call, each with its own generator: each row's
    token and each generator's state afterwards are those of the row sampled alone."""
    logits = np.random.default_rng(0).normal(size=(6, 300)) * 3
    options = dict(temperature=0.9, top_k=40, top_p=0.95)
    together = [np.random.default_rng(s) for s in range(6)]
    alone = [np.random.default_rng(s) for s in range(6)]
    tokens = sample_next(logits, rng=together, **options)
    assert tokens.tolist() == [int(sample_next(row[None], rng=g, **options)[0]) for row, g in zip(logits, alone)]
    assert [g.random() for g in together] == [g.random() for g in alone]     # one draw each
    with pytest.raises(ValueError, match=r"a list of rngs needs logits \(B, V\) and B numpy.random.Generators, "
                                         r"got 2 for logits of shape \(6, 300\)"):
        sample_next(logits, rng=together[:2])
    with pytest.raises(ValueError, match="a list of rngs needs"):
        sample_next(logits[0], rng=together[:1])


def test_small_temperature_approaches_greedy():
    logits = np.random.default_rng(3).normal(size=(64, 30))
    greedy = sample_next(logits, temperature=0)
    # gaps between the top two logits are >~1e-3 here; at tau=1e-6 the runner-up has
    # probability < exp(-1e3) = 0: every draw is the argmax
    cold = sample_next(logits, temperature=1e-6, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(cold, greedy)
    agreement = [np.mean(sample_next(logits, temperature=t, rng=np.random.default_rng(0)) == greedy)
                 for t in (3.0, 0.3, 0.03)]
    assert agreement[0] < agreement[1] < agreement[2] or agreement[2] == 1.0
    assert agreement[0] < 0.5 and agreement[2] > 0.9
    pi = next_token_probs(logits[0], temperature=1e-300)  # no overflow, no NaN
    assert pi[greedy[0]] == 1.0


def test_single_row_and_minus_inf_bans():
    logits = np.array([5.0, -np.inf, 4.0])
    assert sample_next(logits, temperature=0).shape == ()
    tokens = {int(sample_next(logits, temperature=5.0, rng=np.random.default_rng(s)))
              for s in range(200)}
    assert tokens == {0, 2}  # the banned token never comes; both others do at tau=5


@pytest.mark.parametrize("kwargs, match", [
    (dict(logits=np.array([1.0, np.nan])), r"finite or -inf, got nan at index \(1,\)"),
    (dict(logits=np.array([[1.0, np.inf]])), r"got inf at index \(0, 1\)"),
    (dict(logits=np.array([[0.0], [-np.inf]])), r"row \(1,\) is all -inf"),
    (dict(logits=np.zeros((2, 0))), r"V >= 1, got shape \(2, 0\)"),
    (dict(logits=np.zeros(3), temperature=-0.5), "temperature must be .* got -0.5"),
    (dict(logits=np.zeros(3), temperature=float("nan")), "temperature must be .* got nan"),
    (dict(logits=np.zeros(3), top_k=-1), "top_k must be an integer >= 0.* got -1"),
    (dict(logits=np.zeros(3), top_k=2.0), "top_k must be an integer >= 0.* got 2.0"),
    (dict(logits=np.zeros(3), top_p=0.0), r"top_p must be a number in \(0, 1\].* got 0.0"),
    (dict(logits=np.zeros(3), top_p=1.5, temperature=0), "top_p .* got 1.5"),
    (dict(logits=np.zeros(3)), "rng must be a numpy.random.Generator .* got NoneType"),
])
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample_next(**kwargs)


def test_bad_filter_input():
    with pytest.raises(ValueError, match="needs temperature > 0, got 0"):
        filter_logits(np.zeros(3), temperature=0)
    with pytest.raises(ValueError, match="top_k must be .* got -1"):
        top_k_filter(np.zeros(3), -1)
    with pytest.raises(ValueError, match="logits must be real numbers, got dtype bool"):
        top_p_filter(np.array([True, False]), 0.5)
