"""Translation and extractive question answering: the embedded corpora, teacher-forcing
batches, greedy / beam-search decoding, span decoding, run folders, and one small
learning check per task.

The learning checks here are deliberately short (tiny models, seconds on 2 cores) and
their thresholds are LOWER than the issue's targets (95% exact sequences, 90% exact
match), which benchmarks/bench_apps.py measures with the full configurations.
"""
import numpy as np
import pytest

from minillm.core.config import ModelConfig
from minillm.data import PieceTokenizer, dates_corpus, has_distractor, qa_corpus
from minillm.apps.question_answering import QA_CONFIG, QAData, answer, best_span, encode_qa, evaluate_qa
from minillm.store.runtime import Runtime
from model_helpers import load_parts, train_task
from minillm.apps.translation import (
    TranslationData, beam_search, encode_pairs, evaluate_translation, greedy_decode,
    translate,
)

torch = pytest.importorskip("torch")


# -- corpora -------------------------------------------------------------------------------

def test_dates_corpus_is_seeded_disjoint_and_right():
    train, test = dates_corpus(300, 50, seed=3)
    assert (train, test) == dates_corpus(300, 50, seed=3)
    assert dates_corpus(300, 50, seed=4)[0] != train
    assert not {s for s, _ in train} & {s for s, _ in test}
    forms = {"the twenty-third of march , nineteen ninety-four",
             "march twenty-third , nineteen ninety-four",
             "nineteen ninety-four , march the twenty-third"}
    from minillm.data.parallel import _date_text
    assert {_date_text(1994, 3, 23, f) for f in ("day_of_month", "month_day", "year_first")} == forms
    assert _date_text(2007, 1, 1, "month_day") == "january first , two thousand seven"
    assert _date_text(1905, 12, 30, "month_day") == "december thirtieth , nineteen oh five"
    for _, iso in train:
        y, m, d = map(int, iso.split("-"))
        assert 1900 <= y < 2100 and 1 <= m <= 12 and 1 <= d <= 31
    with pytest.raises(ValueError, match="n_train"):
        dates_corpus(0, 5)


def test_piece_tokenizer_round_trip_and_unknowns():
    tok = PieceTokenizer.train(["the twenty-third of march , 1994-03-23"])
    assert tok.pieces("Twenty-third, 1994") == ["twenty", "-", "third", ",", "1", "9", "9", "4"]
    assert tok.decode(tok.encode("1994-03-23")) == "1994-03-23"
    assert tok.decode(tok.encode("the twenty-third of march")) == "the twenty-third of march"
    assert tok.encode("zebra")[0] == tok.unk_id
    assert PieceTokenizer.from_dict(tok.to_dict()).itos == tok.itos
    with pytest.raises(ValueError, match="kind"):
        PieceTokenizer.from_dict({"kind": "bpe"})


def test_qa_corpus_answer_spans_point_at_the_answer():
    train, test = qa_corpus(200, 40, seed=1)
    assert (train, test) == qa_corpus(200, 40, seed=1)
    assert not {(e["context"], e["question"]) for e in train} & {(e["context"], e["question"]) for e in test}
    for e in train + test:
        pieces, ans = PieceTokenizer.pieces(e["context"]), PieceTokenizer.pieces(e["answer"])
        assert pieces[e["answer_start"]:e["answer_start"] + len(ans)] == ans
        name = e["question"].split()[-2] if e["question"].startswith("where") else None
        if name:
            assert name in e["context"]



def test_has_distractor_finds_the_asked_relation_stated_for_another_person():
    # by hand: the asked fact's sentence, and the other sentences of the same template
    ex = {"context": "dana lives in paris . omar lives in lisbon . dana has a red cat .",
          "question": "where does omar live ?", "answer": "lisbon", "answer_start": 8}
    assert has_distractor(ex)
    assert not has_distractor({**ex, "question": "what pet does dana have ?"})
    assert not has_distractor({**ex, "context": "omar lives in lisbon . dana works as a chef ."})
    with pytest.raises(ValueError, match="expected a question of minillm.data.qa's templates"):
        has_distractor({**ex, "question": "who is omar ?"})
    # independently of the templates' wording: a sentence is "name verb... answer .";
    # the relation repeats when two sentences share everything but the name and answer
    train, _ = qa_corpus(300, 5, seed=2)
    hits = 0
    for e in train:
        sentences = [x.split() for x in e["context"].split(" .") if x.strip()]
        shapes = [tuple(w[1:3]) for w in sentences]                  # e.g. ("lives", "in")
        asked = next(w for w in sentences if w[0] in e["question"].split()
                     and " ".join(w[len(w) - len(e["answer"].split()):]) == e["answer"])
        repeated = shapes.count(tuple(asked[1:3])) > 1
        assert has_distractor(e) == repeated, e
        hits += repeated
    assert 0.3 < hits / len(train) < 0.7, hits          # about half (46% measured on 40,000)

# -- translation ---------------------------------------------------------------------------

def _tok_and_pairs(n=40):
    train, test = dates_corpus(n, 10, seed=0)
    return PieceTokenizer.train([s for p in train + test for s in p]), train, test


def test_teacher_forcing_batches_are_shifted_and_pure_functions_of_the_step():
    tok, train, _ = _tok_and_pairs()
    arrays = encode_pairs(train, tok, 16)
    for i in range(5):
        n = (arrays["targets"][i] != -100).sum()
        assert arrays["tgt_idx"][i, 0] == tok.bos_id
        np.testing.assert_array_equal(arrays["tgt_idx"][i, 1:n], arrays["targets"][i, :n - 1])
        assert arrays["targets"][i, n - 1] == tok.eos_id
        assert tok.decode(arrays["targets"][i, :n - 1]) == train[i][1]
    data = TranslationData(train, tok, 8, seed=2)
    a, b, c = data.batch(5), data.batch(5), data.batch(6)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["idx"][:, :3], c["idx"][:, :3]) or not np.array_equal(a["targets"], c["targets"])
    with pytest.raises(ValueError, match="at most 4 pieces"):
        encode_pairs(train, tok, 4)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_beam_of_one_without_penalty_is_greedy_and_backends_decode_alike(backend):
    tok, train, _ = _tok_and_pairs()
    cfg = ModelConfig(vocab_size=tok.vocab_size, block_size=16, d_model=16, n_heads=2, n_layers=1,
                      dtype="float64")
    rt = Runtime(backend)
    model = rt.module.EncoderDecoder(cfg, seed=1)
    for p in model.parameters():              # larger weights than the init, for varied outputs
        data = p.data if backend == "numpy" else p.data.numpy()
        data[...] = np.random.default_rng(data.size).standard_normal(data.shape) * 0.3
    arrays = encode_pairs(train[:6], tok, 16)
    greedy = greedy_decode(model, rt, arrays["idx"], arrays["attention_mask"], tok.bos_id, tok.eos_id, 12)
    for r in range(6):
        beam = beam_search(model, rt, arrays["idx"][r:r + 1], arrays["attention_mask"][r:r + 1],
                           tok.bos_id, tok.eos_id, 12, beam_size=1, length_penalty=0.0)
        assert beam == greedy[r]
    # the same weights in the other backend decode the same ids
    ref = Runtime("numpy")
    twin = ref.module.EncoderDecoder(cfg, seed=1)
    twin.load_state_dict(model.state_dict())
    assert greedy_decode(twin, ref, arrays["idx"], arrays["attention_mask"], tok.bos_id, tok.eos_id, 12) == greedy
    for bad in (0, True):                              # a bool is not a beam width
        with pytest.raises(ValueError, match=r"expected beam_size to be an int >= 1, got"):
            beam_search(model, rt, arrays["idx"][:1], arrays["attention_mask"][:1], 2, 3, 12, beam_size=bad)
    with pytest.raises(ValueError, match="list of str"):
        translate(model, rt, tok, "one string")


def test_translation_learns_and_its_run_folder_serves_both_backends(tmp_path):
    """Lower threshold than the benchmark's 95%: 80% exact dates after 300 steps of a tiny
    one-layer model (measured 99% on this machine, ~3 s; the full run is
    benchmarks/bench_apps.py)."""
    cfg = ModelConfig(vocab_size=128, block_size=16, d_model=32, n_heads=2, n_layers=1, d_ff=64)
    run = train_task("translation", tmp_path / "run", cfg, backend="torch", steps=300, batch_size=32, lr=3e-3,
                     n_train=1500, n_test=100)
    scores = evaluate_translation(run.model, run.runtime, run.tokenizer, run.data[1])
    assert scores["exact"] >= 0.8, scores
    model, rt, tok = load_parts(tmp_path / "run", "translation", "numpy")
    texts = [s for s, _ in run.data[1][:5]]
    assert translate(model, rt, tok, texts) == translate(run.model, run.runtime, run.tokenizer, texts)
    beam = translate(model, rt, tok, texts, beam_size=3)
    assert len(beam) == 5 and all(isinstance(b, str) for b in beam)
    with pytest.raises(ValueError, match="EncoderDecoder"):
        load_parts(tmp_path / "run", "question_answering")


# -- question answering --------------------------------------------------------------------

def test_best_span_respects_order_bounds_and_length():
    s = np.array([1, 5, 0, 0, 9, 0.0])
    e = np.array([9, 0, 0, 4, 0, 2.0])
    assert best_span(s, e, 0, 6) == (4, 5)                     # 11; (4, 0) = 18 is out of order
    assert best_span(s, e, 0, 5) == (0, 0)                     # position 5 excluded: 10
    assert best_span(s, e, 0, 6, max_answer_len=1) == (0, 0)   # (4, 5) is two long
    assert best_span(s, e, 1, 4) == (1, 3)                     # inside [1, 4): 5 + 4


def test_qa_batches_point_at_the_answer():
    train, _ = qa_corpus(30, 5, seed=0)
    tok = PieceTokenizer.train([e[k] for e in train for k in ("context", "question")])
    arrays = encode_qa(train, tok, 64)
    for r, e in enumerate(train):
        span = arrays["idx"][r, arrays["start_positions"][r]:arrays["end_positions"][r] + 1]
        assert tok.decode(span) == e["answer"]
        types, n_q = arrays["token_type_ids"][r], len(tok.encode(e["question"]))
        assert (types[:n_q + 2] == 0).all() and (types[n_q + 2:arrays["attention_mask"][r].sum()] == 1).all()
    data = QAData(train, tok, 4, seed=1)
    assert all(np.array_equal(data.batch(3)[k], data.batch(3)[k]) for k in data.batch(3))
    with pytest.raises(ValueError, match="at most 8 pieces"):
        encode_qa(train, tok, 8)


def test_qa_learns_and_its_run_folder_serves_both_backends(tmp_path):
    """Lower threshold than the benchmark's 90%: 30% exact match after 150 steps of a
    tiny model (a third of the answers; chance is well under 10%)."""
    cfg = ModelConfig(vocab_size=128, block_size=64, d_model=32, n_heads=2, n_layers=2, d_ff=64)
    run = train_task("question_answering", tmp_path / "run", cfg, backend="torch", steps=150, batch_size=32,
                     lr=3e-3, n_train=1500, n_test=100)
    scores = evaluate_qa(run.model, run.runtime, run.tokenizer, run.data[1])
    assert scores["exact_match"] >= 0.3, scores
    assert scores["f1"] >= scores["exact_match"]
    model, rt, tok = load_parts(tmp_path / "run", "question_answering", "numpy")
    ctx = [e["context"] for e in run.data[1][:5]]
    qs = [e["question"] for e in run.data[1][:5]]
    assert answer(model, rt, tok, ctx, qs) == answer(run.model, run.runtime, run.tokenizer, ctx, qs)
    with pytest.raises(ValueError, match="one question per context"):
        answer(model, rt, tok, ctx, qs[:2])
    with pytest.raises(ValueError, match="non-empty context"):
        answer(model, rt, tok, [""], ["where does alice live ?"])


def test_qa_trains_on_given_examples_and_rejects_malformed_ones():
    """``train("question_answering", data=(train, test))`` uses the given split (the test split comes back as
    given) and names what is wrong with a bad example before any training."""
    train, test = qa_corpus(60, 6, seed=3)
    run = train_task("question_answering", None, QA_CONFIG, steps=3, batch_size=4, data=(train, test))
    assert run.data[1] == test and run.data[0] == train and np.isfinite(run.train_loss)
    moved = dict(train[0], answer_start=train[0]["answer_start"] + 1)
    with pytest.raises(ValueError, match="answer .* at piece"):
        train_task("question_answering", None, QA_CONFIG, steps=1, batch_size=4, data=([moved], test))
    with pytest.raises(ValueError, match="as a dict with"):
        train_task("question_answering", None, QA_CONFIG, steps=1, batch_size=4, data=(train, [{"context": "a ."}]))
    with pytest.raises(ValueError, match=r"as \(train, test\)"):
        train_task("question_answering", None, QA_CONFIG, steps=1, batch_size=4, data=train)
    with pytest.raises(ValueError, match="non-empty list of test"):
        train_task("question_answering", None, QA_CONFIG, steps=1, batch_size=4, data=(train, []))


def test_binding_probe_examples_are_two_people_with_one_relation():
    """benchmarks/bench_qa_binding.py's corpus: valid spans, two subjects, the asked one
    in the question, the same fact template twice (so only the name tells them apart)."""
    import importlib.util
    from pathlib import Path

    from minillm.apps.question_answering import _check_examples
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_qa_binding.py"
    spec = importlib.util.spec_from_file_location("bench_qa_binding", path)
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    examples = probe.binding_examples(200, seed=0)
    _check_examples((examples, examples))
    for ex in examples:
        pieces = PieceTokenizer.pieces(ex["context"])
        cut = pieces.index(".") + 1
        first, second = pieces[:cut], pieces[cut:]
        assert first[0] != second[0] and first[1] == second[1]          # two people, one relation
        asked, other = (first, second) if ex["answer_start"] < cut else (second, first)
        question = PieceTokenizer.pieces(ex["question"])
        assert asked[0] in question and other[0] not in question
