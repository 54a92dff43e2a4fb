"""Every evaluation counts every held-out item exactly once (issue 28, item 1).

The causal LM's batches score the N - 1 targets of an N-token split, each once (the last
``(N - 1) mod T`` ones too); the masked LM's batches make every token of the split a
candidate once; the classifier's batches hold every example once. And the perplexity of
:func:`evaluate_lm` over those batches equals the one computed over all targets directly:
the oracle is ``torch.nn.functional.cross_entropy`` over the whole sequence at once.
"""
import math

import numpy as np
import pytest

from minillm import ModelConfig
from minillm.core.config import IGNORE_INDEX
from minillm.store.runtime import Runtime
from minillm.train.evaluation import evaluate_lm
from minillm.train.tasks import causal_lm_eval_batches, classification_eval_batches, masked_lm_eval_batches

torch = pytest.importorskip("torch")
F = torch.nn.functional

# (N, T): a split with no tail, tails of every length, N - 1 < T (a split shorter than a
# window), N - 1 == T, and the 95 tokens in blocks of 32 (64 of 94 were scored)
SIZES = [(33, 8), (34, 8), (40, 8), (41, 8), (95, 32), (5, 8), (2, 8), (9, 8), (100, 7), (64, 1)]


def _counted(batches) -> list[int]:
    out = []
    for b in batches:
        y = np.asarray(b["targets"])
        out.extend(y[y != IGNORE_INDEX].tolist())
    return out


@pytest.mark.parametrize("N,T", SIZES)
@pytest.mark.parametrize("B", [1, 3])
def test_causal_lm_batches_score_each_of_the_n_minus_1_targets_once(N, T, B):
    ids = np.arange(N) + 1000                          # each token's value names its position
    batches = causal_lm_eval_batches(ids, T, B)
    counted = _counted(batches)
    assert sorted(counted) == ids[1:].tolist(), f"N={N}, T={T}: scored {len(counted)} of {N - 1} targets"
    for b in batches:
        x, y = np.asarray(b["idx"]), np.asarray(b["targets"])
        assert x.shape == y.shape and x.shape[1] <= T and x.shape[0] <= B
        keep = y != IGNORE_INDEX
        np.testing.assert_array_equal(y[keep], (x + 1)[keep])   # each target is its input's next token


class Bigram:
    """A model whose logits at a position depend on that token only (a table), so its
    loss over any windows equals its loss over the whole sequence: what makes the
    perplexity over all targets computable directly, whatever the window length."""

    def __init__(self, table):
        from minillm import reference
        self.table, self.ce, self.training = table, reference.cross_entropy, True

    def eval(self):
        self.training = False

    def train(self, mode=True):
        self.training = mode

    def __call__(self, idx, targets):
        logits = self.table[np.asarray(idx)]                              # (B, T, V)
        return logits, self.ce(logits.reshape(-1, logits.shape[-1]), np.asarray(targets).reshape(-1))


@pytest.mark.parametrize("N,T", SIZES)
def test_perplexity_equals_the_one_over_all_targets(N, T):
    """Oracle: torch's cross_entropy over the whole sequence's N - 1 targets at once.
    Tolerance: rtol 1e-12, float64 sums of the same N - 1 terms in another grouping."""
    V = 13
    rng = np.random.default_rng(N * 100 + T)
    table = rng.normal(size=(V, V)) * 2.0                                  # (V, V)
    ids = rng.integers(0, V, size=N)
    scores = evaluate_lm(Runtime("numpy"), Bigram(table), causal_lm_eval_batches(ids, T, 4))
    oracle = F.cross_entropy(torch.from_numpy(table[ids[:-1]]), torch.from_numpy(ids[1:]), reduction="sum")
    assert scores["tokens"] == N - 1
    np.testing.assert_allclose(scores["loss"], float(oracle) / (N - 1), rtol=1e-12)
    np.testing.assert_allclose(scores["perplexity"], math.exp(float(oracle) / (N - 1)), rtol=1e-12)
    np.testing.assert_allclose(scores["bits_per_token"], float(oracle) / (N - 1) / math.log(2), rtol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_gpt_perplexity_of_a_short_split_equals_cross_entropy_over_the_sequence(backend):
    """A real GPT on a split of N - 1 < T targets (one window): the oracle is torch's
    cross_entropy over the logits of the whole sequence. Tolerance: rtol 1e-10, float64
    (the reference's log-sum-exp against torch's)."""
    config = ModelConfig(vocab_size=17, block_size=16, d_model=16, n_heads=2, n_layers=1, dtype="float64")
    rt = Runtime(backend)
    model = rt.module.GPT(config, seed=0)
    ids = np.random.default_rng(1).integers(0, 17, size=12)
    scores = evaluate_lm(rt, model, causal_lm_eval_batches(ids, config.block_size, 8))
    with rt.no_grad():
        logits, _ = model(rt.tensor(ids[None, :-1]))
    oracle = F.cross_entropy(torch.from_numpy(np.asarray(rt.to_numpy(logits))[0]), torch.from_numpy(ids[1:]))
    assert scores["tokens"] == 11
    np.testing.assert_allclose(scores["perplexity"], math.exp(float(oracle)), rtol=1e-10)


@pytest.mark.parametrize("N,T", [(40, 8), (43, 8), (5, 8), (95, 32), (1, 4)])
def test_masked_lm_batches_make_every_token_a_candidate_once(N, T):
    specials = (0, 1, 2, 3)
    ids = np.arange(N) + 4                               # no special token; values name positions
    every = masked_lm_eval_batches(ids, T, 3, mask_id=3, vocab_size=N + 4, special_ids=specials, p=1.0)
    assert sorted(_counted(every)) == ids.tolist()       # p = 1: each position scored exactly once
    some = _counted(masked_lm_eval_batches(ids, T, 3, mask_id=3, vocab_size=N + 4, special_ids=specials))
    assert len(some) == len(set(some)), "a position was scored twice"
    for b in masked_lm_eval_batches(ids, T, 3, mask_id=3, vocab_size=N + 4, special_ids=specials, p=1.0):
        assert b["idx"].shape == b["targets"].shape and b["idx"].shape[1] == min(T, N)


def test_classification_batches_hold_every_example_once_in_order():
    seqs = [[5 + i % 3] * (1 + i % 4) for i in range(23)]
    labels = [i % 2 for i in range(23)]
    batches = classification_eval_batches(seqs, labels, 5, pad_id=0, max_len=4)
    assert np.concatenate([b["labels"] for b in batches]).tolist() == labels


def test_too_short_splits_are_refused_by_name():
    with pytest.raises(ValueError, match="at least 2 tokens"):
        causal_lm_eval_batches(np.arange(1), 8, 2)
    with pytest.raises(ValueError, match="at least 1 token"):
        masked_lm_eval_batches(np.arange(0), 8, 2, mask_id=3, vocab_size=10, special_ids=(0,))


@pytest.mark.parametrize("n,batch", [(7, 3), (7, 7), (1, 256), (10, 5)])
def test_translation_and_qa_scores_count_every_example_once(n, batch, monkeypatch):
    """The decoder is replaced by a recorder that answers right on every other input: each
    held-out example reaches it exactly once and the score is over all n of them."""
    import minillm.apps.question_answering as qa
    import minillm.apps.translation as translation
    pairs = [(f"source {i}", f"target {i}") for i in range(n)]
    seen = []

    def fake_translate(model, runtime, tok, texts, *args):
        seen.extend(texts)
        return [f"target {t.split()[1]}" if int(t.split()[1]) % 2 == 0 else "wrong" for t in texts]

    monkeypatch.setattr(translation, "translate", fake_translate)
    scores = translation.evaluate_translation(None, None, type("Tok", (), {"pieces": staticmethod(list)})(),
                                              pairs, batch_size=batch)
    assert sorted(seen) == sorted(s for s, _ in pairs) and scores["n"] == n
    assert scores["exact"] == pytest.approx(sum(i % 2 == 0 for i in range(n)) / n, rel=1e-15)

    examples = [{"context": f"c{i}", "question": f"q{i}", "answer": f"a{i}"} for i in range(n)]
    asked = []

    def fake_answer(model, runtime, tok, contexts, questions):
        asked.extend(questions)
        return [f"a{q[1:]}" if int(q[1:]) % 2 == 0 else "no" for q in questions]

    monkeypatch.setattr(qa, "answer", fake_answer)
    scores = qa.evaluate_qa(None, None, None, examples, batch_size=batch)
    assert sorted(asked) == sorted(e["question"] for e in examples) and scores["n"] == n
    assert scores["exact_match"] == pytest.approx(sum(i % 2 == 0 for i in range(n)) / n, rel=1e-15)
