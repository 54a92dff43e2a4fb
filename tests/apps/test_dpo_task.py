"""The dpo task and `minillm dpo` (issue 26.3): the training loss of a GPT on preference
pairs (``dpo_objective``) in the reference (hand-written chain) against the torch backend
and against trl's loss on the same log-probabilities; the frozen reference's
log-probabilities; the embedded preference set; trl's JSONL format read with errors naming
the line; the command end to end with --resume, --reference and evaluate."""
import json
import re

import numpy as np
import pytest

import minillm.reference as R
from minillm import ModelConfig
from minillm.cli import main
from minillm.core.config import IGNORE_INDEX
from minillm.data.instructions import instruction_set
from minillm.data.preferences import check_pair, encode_pair, preference_set, read_preferences
from parity import assert_close
from tolerances import FLOAT64

torch = pytest.importorskip("torch")
import minillm.torch_backend as T  # noqa: E402
from training_helpers import interrupt_at  # noqa: E402  (tests/, beside conftest.py)

CFG = ModelConfig(vocab_size=13, block_size=8, d_model=8, n_heads=2, n_layers=2, dtype="float64")


def _batch(rng, P=3, L=8):
    """2P rows (P chosen, P rejected): random tokens, targets counted on a random suffix."""
    idx = rng.integers(0, 13, size=(2 * P, L))
    targets = np.full((2 * P, L), IGNORE_INDEX)
    for r in range(2 * P):
        start = int(rng.integers(1, L - 1))
        targets[r, start:] = rng.integers(0, 13, size=L - start)
    return idx, targets, rng.normal(-20.0, 3.0, size=2 * P)


@pytest.mark.parametrize("seed, label_smoothing, rpo_alpha", [(0, 0.0, 0.0), (1, 0.2, 0.0), (2, 0.0, 0.7)])
@pytest.mark.parametrize("fused", [True, False])
def test_dpo_objective_loss_and_every_gradient_equal_torch_float64(seed, label_smoothing, rpo_alpha, fused):
    rng = np.random.default_rng(seed)
    idx, targets, ref_logps = _batch(rng)
    mine, theirs = R.GPT(CFG, seed=seed), T.GPT(CFG, seed=seed)
    theirs.set_fused(fused)
    loss, chosen, rejected = R.dpo_objective(mine, idx, targets, ref_logps, 0.5, label_smoothing, rpo_alpha)
    loss.backward()
    t_loss, t_chosen, t_rejected = T.dpo_objective(theirs, torch.from_numpy(idx), torch.from_numpy(targets),
                                                   torch.from_numpy(ref_logps), 0.5, label_smoothing, rpo_alpha)
    t_loss.backward()
    assert_close("loss", float(loss), t_loss.item(), *FLOAT64[:2])
    assert_close("chosen rewards", chosen, t_chosen.numpy(), *FLOAT64[:2])
    assert_close("rejected rewards", rejected, t_rejected.numpy(), *FLOAT64[:2])
    grads = dict(theirs.named_parameters())
    for name, p in mine.named_parameters():
        assert_close(f"d{name}", p.grad, grads[name].grad.numpy(), *FLOAT64[:2])


def test_dpo_objective_is_dpo_loss_of_the_sequence_log_probabilities():
    """The composite is what it says: the mean of dpo_loss over sequence_logps of the rows."""
    rng = np.random.default_rng(3)
    idx, targets, ref_logps = _batch(rng, P=2)
    model = R.GPT(CFG, seed=3)
    loss, chosen, rejected = R.dpo_objective(model, idx, targets, ref_logps, 0.1)
    logps = R.sequence_logps(model(idx)[0], targets, targets != IGNORE_INDEX)
    losses, c, r = R.dpo_loss(logps[:2], logps[2:], ref_logps[:2], ref_logps[2:], 0.1)
    assert float(loss) == pytest.approx(losses.mean(), rel=1e-12)
    np.testing.assert_allclose(chosen, c, rtol=1e-12)
    # RPO's term: the chosen completions' cross-entropy per token, as the GPT's own loss on them
    with_nll, _, _ = R.dpo_objective(model, idx, targets, ref_logps, 0.1, rpo_alpha=0.5)
    chosen_only = np.where(np.arange(4)[:, None] < 2, targets, IGNORE_INDEX)
    _, nll = model(idx, chosen_only)
    assert float(with_nll) == pytest.approx(losses.mean() + 0.5 * float(nll), rel=1e-12)
    with pytest.raises(ValueError, match=r"expected 2P rows"):
        R.dpo_objective(model, idx[:3], targets[:3], ref_logps[:3])


# -- the data --------------------------------------------------------------------------

def test_the_embedded_preference_set_is_the_instruction_set_with_a_wrong_answer_to_reject():
    train, test = preference_set(8, 3, seed=0)
    rows_train, rows_test = instruction_set(8, 3, seed=0)
    assert len(train) == len(rows_train) == 32 and len(test) == len(rows_test) == 12
    for pair, row in zip(train + test, rows_train + rows_test):
        check_pair(pair, "embedded")                        # chosen != rejected, one assistant message each
        assert pair["prompt"] == row["messages"][:-1] and pair["chosen"] == row["messages"][-1:]
        assert pair["task"] == row["task"]
    sentiment = [p for p in train if p["task"] == "sentiment"]
    assert {(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in sentiment} <= \
        {("positive", "negative"), ("negative", "positive")}
    assert preference_set(8, 3, seed=0) == (train, test)          # a pure function of its sizes and seed


@pytest.mark.parametrize("line, message", [
    ('{"prompt": "a", "chosen": "b"}',
     r"line 2: expected the fields \['prompt', 'chosen', 'rejected'\], missing \['rejected'\]"),
    ('{"prompt": "a", "chosen": "b", "rejected": "b"}', r"line 2: chosen and rejected are equal \('b'\)"),
    ('{"prompt": "a", "chosen": "", "rejected": "b"}', r"line 2: expected non-empty chosen and rejected"),
    ('{"prompt": [{"role": "robot", "content": "a"}], "chosen": [{"role": "assistant", "content": "b"}], '
     '"rejected": [{"role": "assistant", "content": "c"}]}', r"line 2: prompt\[0\]: expected a message"),
    ('{"prompt": [{"role": "user", "content": "a"}], "chosen": [{"role": "user", "content": "b"}], '
     '"rejected": [{"role": "assistant", "content": "c"}]}', r"line 2: expected chosen as one assistant message"),
    ('{"prompt": "a", "chosen": ["b"], "rejected": "c"}', r"line 2: expected prompt, chosen and rejected as strings"),
    ('not json', r"line 2: not JSON"),
])
def test_a_bad_line_is_an_error_naming_it(tmp_path, line, message):
    path = tmp_path / "prefs.jsonl"
    path.write_text('{"prompt": "x", "chosen": "y", "rejected": "z"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(str(path)) + ", " + message):
        read_preferences(path)


class _Chars:
    """A tokenizer of one id per character (enough for encode_pair without a template)."""

    def encode(self, text):
        return [ord(c) % 13 for c in text]


def test_a_pair_counts_only_its_completion_and_a_long_one_names_its_line():
    pair = {"prompt": "abc", "chosen": "de", "rejected": "fgh", "line": 7}
    enc = encode_pair(_Chars(), None, pair, 8, "prefs.jsonl, line 7")
    assert enc.chosen_idx == _Chars().encode("abcd") and enc.rejected_idx == _Chars().encode("abcfg")
    assert enc.chosen_targets == [IGNORE_INDEX] * 2 + _Chars().encode("de")       # the completion's tokens
    assert enc.rejected_targets == [IGNORE_INDEX] * 2 + _Chars().encode("fgh")
    with pytest.raises(ValueError, match=r"prefs.jsonl, line 7: the prompt with its rejected completion is 6 "
                                         r"tokens, more than the model's block_size \+ 1 = 5"):
        encode_pair(_Chars(), None, pair, 4, "prefs.jsonl, line 7")
    with pytest.raises(ValueError, match=r"a conversational pair needs the model's chat template"):
        encode_pair(_Chars(), None, preference_set(1, 1)[0][0], 8, "x")


# -- the command -------------------------------------------------------------------------

TINY = ["--d-model", "16", "--n-layers", "1", "--n-heads", "2", "--block-size", "32", "--batch-size", "4"]


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("dpo")
    corpus = base / "corpus.txt"
    corpus.write_text("the cat sat on the mat. the dog sat on the log. " * 40, encoding="utf-8")
    assert main(["pretrain", "--corpus", str(corpus), "--tokenizer", "char", "--backend", "numpy",
                 "--steps", "2", "--out", str(base / "lm"), *TINY]) == 0
    prefs = base / "prefs.jsonl"
    rows = [{"prompt": f"the {a} sat on the", "chosen": f" {b}.", "rejected": f" {c}."}
            for a, b, c in [("cat", "mat", "dog"), ("dog", "log", "cat"), ("cat", "mat", "log"),
                            ("dog", "log", "mat")] * 5]
    prefs.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return base / "lm", prefs




def test_dpo_command_trains_resumes_and_evaluates(lm_run, tmp_path, capsys, monkeypatch):
    lm, prefs = lm_run
    out, straight = tmp_path / "dpo", tmp_path / "straight"
    base = ["dpo", "--from", str(lm), "--data", str(prefs), "--backend", "numpy", "--steps", "4",
            "--batch-size", "4", "--beta", "0.5", "--held-out", "0.2"]
    with monkeypatch.context() as m:
        interrupt_at(m, 2)
        assert main([*base, "--out", str(out)]) == 130
    assert main(["dpo", "--out", str(out), "--resume", "--backend", "numpy"]) == 0    # the rest as recorded
    summary = json.loads(capsys.readouterr().out)
    assert summary["task"] == "dpo" and summary["steps"] == 4
    test = summary["test"]
    assert test["pairs"] == 4 and 0.0 <= test["reward_accuracy"] <= 1.0 and "exact_match" not in test
    assert main([*base, "--out", str(straight)]) == 0                                 # never interrupted
    assert json.loads(capsys.readouterr().out)["test"] == test                         # the same run
    run = json.loads((out / "run.json").read_text())
    assert run["beta"] == 0.5 and run["reference_model"] == str(lm.resolve())

    assert main(["evaluate", str(out), "--backend", "numpy"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["task"] == "dpo" and scores["pairs"] == 4
    assert scores["reward_accuracy"] == test["reward_accuracy"]
    assert scores["margin"] == pytest.approx(test["margin"], rel=1e-9)

    # served, it generates as the GPT it is (the endpoint the causal_lm and sft runs have too)
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient
    from minillm.serving import create_app
    from minillm.store.runtime import Runtime
    with TestClient(create_app(out, Runtime("numpy"))) as client:
        r = client.post("/v1/generate", json={"prompt": "the cat", "max_new_tokens": 3, "temperature": 0})
        assert r.status_code == 200 and len(r.json()["tokens"]) <= 3
        assert client.post("/v1/classify", json={"text": "a"}).json()["error"] == "wrong_task"


def test_the_reference_is_frozen_and_a_reference_of_another_config_is_refused(lm_run, tmp_path, capsys):
    """Scored against the policy it started from, a run's first held-out rewards are 0: the
    reference's log-probabilities are the starting policy's, computed without its training."""
    from minillm.apps.dpo import read_policy
    lm, prefs = lm_run
    other = tmp_path / "other"
    assert main(["pretrain", "--corpus", str(prefs.parent / "corpus.txt"), "--tokenizer", "char", "--backend",
                 "numpy", "--steps", "1", "--out", str(other), *TINY[:-4], "--block-size", "16",
                 "--batch-size", "4"]) == 0
    capsys.readouterr()
    assert main(["dpo", "--from", str(lm), "--data", str(prefs), "--reference", str(other), "--backend", "numpy",
                 "--steps", "1", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "--reference" in err and "block_size 32 (policy) vs 16 (reference)" in err
    assert not (tmp_path / "bad" / "checkpoints").exists()

    from minillm.train.entry import train
    from minillm.train.run_config import RunConfig
    from minillm.train.training import TrainConfig
    config = read_policy(lm)[0]
    run = train("dpo", None, RunConfig(config, TrainConfig.recipe(1, 1e-9, batch_size=4), backend="numpy"),
                data=read_preferences(prefs), base=lm, held_out=0.2, progress=False, evaluate_test=False)
    first = run.validation                     # one step at lr 1e-9: the policy is still the reference
    assert abs(first["chosen_reward"]) < 1e-6 and abs(first["rejected_reward"]) < 1e-6


def test_a_dpo_run_from_an_sft_run_renders_its_template_and_scores_each_task(tmp_path):
    """From an sft run: the embedded pairs through the run's chat template, the run keeps the
    template, and its scores have the per-task exact match SFT reports (the same held-out
    questions: the preference set's held-out prompts are the instruction set's)."""
    from minillm.data import split_contiguous
    from minillm.store.runs import load_run
    from minillm.store.runtime import Runtime
    from minillm.train import pipeline
    from minillm.train.entry import train
    from minillm.train.run_config import RunConfig
    from minillm.train.training import TrainConfig

    rows = instruction_set(6, 2)[0]
    text = "\n".join(m["content"] for r in rows for m in r["messages"])
    tok = pipeline.train_tokenizer("char", text, 0)
    cfg = ModelConfig(vocab_size=tok.vocab_size, block_size=160, d_model=16, n_heads=2, n_layers=1)
    few = lambda lr: RunConfig(cfg, TrainConfig.recipe(2, lr, batch_size=4), backend="torch")  # noqa: E731
    splits = split_contiguous(np.asarray(tok.encode(text * 3)), pipeline.TEXT_FRACTIONS)
    train("causal_lm", tmp_path / "lm", few(3e-3), data=splits, tokenizer=tok, progress=False)
    train("sft", tmp_path / "sft", few(1e-3), base=tmp_path / "lm", n_train=6, n_test=2, progress=False)
    run = train("dpo", tmp_path / "dpo", few(5e-4), base=tmp_path / "sft", n_train=6, n_test=2, progress=False)
    assert set(run.test["exact_match"]["tasks"]) <= {"sentiment", "iso_date", "extractive_qa", "instruction"}
    assert run.test["pairs"] >= 1 and 0.0 <= run.test["reward_accuracy"] <= 1.0
    loaded = load_run(tmp_path / "dpo", Runtime("torch"))
    assert loaded.tokenizer.chat_template == load_run(tmp_path / "sft", Runtime("torch")).tokenizer.chat_template


def test_dpo_with_lora_trains_the_adapters_only_and_saves_them_in_peft_layout(lm_run, tmp_path, capsys):
    from minillm.store import model_io
    from minillm.store.peft_adapters import CONFIG_FILE, WEIGHTS_FILE
    from minillm.store.runs import checkpoint_folder
    lm, prefs = lm_run
    out = tmp_path / "dpo"
    assert main(["dpo", "--from", str(lm), "--data", str(prefs), "--backend", "torch", "--steps", "3",
                 "--batch-size", "4", "--lora", "2,4,W_Q,W_V", "--out", str(out)]) == 0
    capsys.readouterr()
    base, _ = model_io.load_model(checkpoint_folder(lm), "numpy")
    tuned, _ = model_io.load_model(out / "checkpoints" / "last", "numpy")
    tuned_weights = dict(tuned.named_parameters())
    for name, p in base.named_parameters():                 # every base weight, to the bit
        assert np.array_equal(p.data, tuned_weights[name].data), name
    assert np.abs(tuned_weights["blocks.0.attn.lora_W_V.B"].data).max() > 0
    config = json.loads((out / "checkpoints" / "last" / CONFIG_FILE).read_text())
    assert config["target_modules"] == ["transformer.h.0.attn.c_attn"] and config["r"] == 2
    assert (out / "checkpoints" / "last" / WEIGHTS_FILE).is_file()
