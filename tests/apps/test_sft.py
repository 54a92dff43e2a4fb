"""SFT (issue 26.1) against trl: on a batch of conversations rendered with
DEFAULT_CHAT_TEMPLATE, trl's ``SFTTrainer`` with ``assistant_only_loss=True`` makes the same
tokens and counted targets (its collator's labels), and the loss and every gradient equal
ours for the reference and both torch paths, the minillm model given to trl as the
``transformers`` GPT-2 that ``save_hf`` writes. trl's gradients come back in minillm's
layout by saving them as the weights of a copy of its model and reading that folder with
``read_hf`` (a linear relayout, so it maps gradients as it maps weights).

Two comparisons, two tolerances:
- trl's loss formula (the sum of the counted targets' negative log-probabilities over
  their count, ``SFTTrainer.compute_loss``) on the float64 logits of the ``transformers``
  model and trl's labels: float64, the parity contract's rtol 1e-7 / atol 1e-9 (the same
  formulas, the sums in another order);
- ``SFTTrainer.compute_loss`` itself: its LM head and log-probabilities run in float32 by
  design (trl/kernels/chunked_logprob.py accumulates the logits with ``a.float() @ b.float()``),
  so the float64 model's loss and gradients come back rounded through float32 logits:
  rtol 1e-5 and atol 1e-6 of the largest gradient entry (float32's 6e-8 relative rounding of
  logits of order 1, grown by the softmax and the backward through two layers; a wrong
  mask or formula is off by order 1).
"""
import json

import numpy as np
import pytest

import minillm.reference as ref
from minillm.core.config import ModelConfig
from minillm.data.chat_batches import pad_conversations
from minillm.data.chat_template import DEFAULT_CHAT_TEMPLATE
from minillm.data.conversations import encode_conversation

from model_helpers import assert_model_close, grads, to_np
from parity import assert_close

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")
tokenizers = pytest.importorskip("tokenizers")
import minillm.torch_backend as tb  # noqa: E402
from minillm.apps.interop import read_hf, save_hf  # noqa: E402
from minillm.apps.sft import read_source  # noqa: E402

CORPUS = ["User: Assistant: System: Sentiment: the plot was not good, but the music was fun.",
          "ISO date: march the first , nineteen ninety-four 1994-03-01 positive negative"] * 4
ROWS = [
    [{"role": "user", "content": "Sentiment: the plot was good."}, {"role": "assistant", "content": "positive"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "ISO date: march the first"},
     {"role": "assistant", "content": "1994-03-01"}],
    [{"role": "user", "content": "Sentiment: dull"}, {"role": "assistant", "content": "negative"},
     {"role": "user", "content": "and fun?"}, {"role": "assistant", "content": "positive, but the plot"}],
]


def _tokenizer(folder):
    """A byte-level BPE with an end and a pad token, saved as transformers saves it."""
    from tokenizers import decoders, models, pre_tokenizers, trainers
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=320, special_tokens=["<|end|>", "<|pad|>"],
                                                        show_progress=False,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    hf = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|end|>", pad_token="<|pad|>")
    hf.chat_template = DEFAULT_CHAT_TEMPLATE
    hf.save_pretrained(str(folder))
    return hf


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    """A GPT-2 folder (weights from a seeded minillm GPT, float64) with the tokenizer and
    the default template."""
    folder = tmp_path_factory.mktemp("gpt2chat")
    hf_tok = _tokenizer(folder)
    config = ModelConfig(vocab_size=len(hf_tok), block_size=128, d_model=16, n_heads=2, n_layers=2,
                         activation="gelu_tanh", tie_embeddings=True, dropout=0.0, dtype="float64")
    save_hf(ref.GPT(config, seed=5), folder)
    return folder, hf_tok


def _trl(folder, hf_tok, tmp_path):
    """trl's trainer on ROWS, and its collated batch."""
    model = transformers.AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float64)
    for name in ("bos", "eos", "pad"):                        # save_hf writes GPT-2's ids; this tokenizer's
        setattr(model.config, f"{name}_token_id", hf_tok.convert_tokens_to_ids(hf_tok.eos_token if name != "pad"
                                                                              else hf_tok.pad_token))
        setattr(model.generation_config, f"{name}_token_id", getattr(model.config, f"{name}_token_id"))
    args = trl.SFTConfig(output_dir=str(tmp_path / "trl"), assistant_only_loss=True, report_to=[],
                         per_device_train_batch_size=len(ROWS), use_cpu=True, bf16=False, fp16=False)
    trainer = trl.SFTTrainer(model=model, args=args, processing_class=hf_tok,
                             train_dataset=datasets.Dataset.from_list([{"messages": m} for m in ROWS]))
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(ROWS))])
    model.train()
    return trainer, model, batch


def _grads_as_state(model, folder):
    """The model's gradients in minillm's layout (module docstring); its weights and no
    gradients left after."""
    weights = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.grad)
    model.save_pretrained(str(folder))
    with torch.no_grad():
        for p, w in zip(model.parameters(), weights):
            p.copy_(w)
            p.grad = None
    return read_hf(folder, dtype="float64").state


def _close(what, ours, theirs, float64, scale):
    """``scale``: the largest entry of all the gradients (a key bias's gradient is zero in
    exact arithmetic, rounding noise of 1e-21 here, judged on the model's scale)."""
    if float64:
        assert_model_close(what, ours, theirs, "float64")
    else:
        assert_close(what, to_np(ours), to_np(theirs), rtol=1e-5, atol=1e-6 * scale)


@pytest.fixture(scope="module")
def theirs(hf_folder, tmp_path_factory):
    """trl's labels; the float64 formula's loss and gradients; compute_loss's loss and gradients."""
    folder, hf_tok = hf_folder
    tmp = tmp_path_factory.mktemp("trl")
    trainer, model, batch = _trl(folder, hf_tok, tmp)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits   # float64
    labels = batch["labels"][:, 1:]
    mask = labels != -100
    logps = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    formula = -(logps * mask).sum() / mask.sum().clamp(min=1)                  # SFTTrainer.compute_loss's
    formula.backward()
    formula_grads = _grads_as_state(model, tmp / "formula")
    loss = trainer.compute_loss(model, batch)
    loss.backward()
    return batch, {True: (float(formula), formula_grads), False: (float(loss), _grads_as_state(model, tmp / "trl"))}


@pytest.mark.parametrize("float64", [True, False], ids=["formula-float64", "compute_loss-float32-head"])
@pytest.mark.parametrize("path", ["reference", "explicit", "fused"])
def test_loss_and_gradients_equal_trl_sft(hf_folder, theirs, path, float64):
    folder, _ = hf_folder
    batch, results = theirs
    src = read_source(folder, dtype="float64")
    assert src.template == DEFAULT_CHAT_TEMPLATE and src.kind == "hf"
    encoded = [encode_conversation(src.tokenizer, src.template, m) for m in ROWS]
    ours = pad_conversations([x for x, _ in encoded], [y for _, y in encoded], pad_id=0)
    # the same tokens and the same counted targets as trl's collator (its labels shifted by one)
    for b, (x, y) in enumerate(encoded):
        np.testing.assert_array_equal(batch["input_ids"].numpy()[b, :len(x)], x)
        np.testing.assert_array_equal(batch["labels"].numpy()[b, 1:len(x)], y)
    assert (batch["labels"].numpy()[:, 1:] != -100).sum() == (ours["targets"] != -100).sum()
    backend = ref if path == "reference" else tb
    model = backend.GPT(src.config)
    model.load_state_dict(src.state)
    if path == "fused":
        model.set_fused(True)
    x, y = ((torch.as_tensor(ours["idx"]), torch.as_tensor(ours["targets"])) if backend is tb
            else (ours["idx"], ours["targets"]))
    _, loss = model(x, y)
    loss.backward()
    theirs_loss, theirs_grads = results[float64]
    _close(f"{path} loss", np.asarray(float(loss)), np.asarray(theirs_loss), float64, abs(theirs_loss))
    got = grads(model)
    assert set(got) == set(theirs_grads)
    scale = max(float(np.abs(g).max()) for g in theirs_grads.values())
    for name in got:
        _close(f"{path} d{name}", got[name], theirs_grads[name], float64, scale)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_sft_task_from_a_hugging_face_folder_and_again_from_its_run(hf_folder, tmp_path, backend):
    """The task end to end, briefly: it tunes the folder's model, records the folder's
    tokenizer (its files) with the template, and `evaluate` scores the held-out rows per
    task; an sft run can be tuned again (its template read back from its tokenizer)."""
    from minillm.store.runs import load_run
    from minillm.train.entry import train
    from minillm.train.run_config import RunConfig
    from minillm.train.run_evaluation import evaluate
    from minillm.train.training import TrainConfig

    folder, _ = hf_folder
    config = read_source(folder).config
    first = train("sft", tmp_path / "a", RunConfig(config, TrainConfig.recipe(2, 1e-3, batch_size=2), backend=backend),
                  base=folder, n_train=3, n_test=2, progress=False)
    assert set(first.test["tasks"]) <= {"sentiment", "iso_date", "extractive_qa", "instruction"}
    assert first.test["n"] + first.test["skipped"] <= 8 and 0 <= first.test["exact"] <= 1
    run = load_run(tmp_path / "a")
    assert run.task == "sft" and run.tokenizer.chat_template == DEFAULT_CHAT_TEMPLATE
    assert run.tokenizer.encode_with_offsets("x<|end|>")[0][-1] == run.tokenizer.eos_id
    scores = evaluate(tmp_path / "a")
    assert scores["data"]["rows"] == 8 and set(scores["tasks"]) == set(first.test["tasks"])
    again = train("sft", tmp_path / "b", RunConfig(config, TrainConfig.recipe(1, 1e-3, batch_size=2), backend=backend),
                  base=tmp_path / "a", n_train=3, n_test=2, progress=False, packing=False)
    assert load_run(tmp_path / "b").tokenizer.chat_template == DEFAULT_CHAT_TEMPLATE
    assert again.steps == 1


def test_sft_refuses_a_model_that_is_not_the_base(hf_folder, tmp_path):
    from minillm.train.entry import train
    from minillm.train.run_config import RunConfig
    from minillm.train.training import TrainConfig

    folder, _ = hf_folder
    config = read_source(folder).config.__class__(**{**read_source(folder).config.to_dict(), "d_model": 32})
    with pytest.raises(ValueError, match=r"the run's model config differs from .*'d_model': \(32, 16\)"):
        train("sft", tmp_path / "c", RunConfig(config, TrainConfig.recipe(1, 1e-3)), base=folder, progress=False)
    with pytest.raises(ValueError, match="expected base="):
        train("sft", None, RunConfig(config, TrainConfig.recipe(1, 1e-3)), progress=False)
    with pytest.raises(ValueError, match=r"data row 1: message 0: expected a role in"):
        train("sft", None, RunConfig(read_source(folder).config, TrainConfig.recipe(1, 1e-3)), base=folder,
              data=[{"messages": ROWS[0]}, {"messages": [{"role": "bot", "content": "x"}]}], progress=False)


@pytest.fixture(scope="module")
def char_run(tmp_path_factory):
    """A tiny causal_lm run with a char tokenizer that knows the conversations' characters."""
    from minillm.data import CharTokenizer
    from minillm.data.chat_template import render_chat
    from minillm.train.entry import train
    from minillm.train.run_config import RunConfig
    from minillm.train.training import TrainConfig
    from minillm.data import Splits

    text = "".join(render_chat(DEFAULT_CHAT_TEMPLATE, m, eos_token="")[0] for m in ROWS) * 20
    tok = CharTokenizer.train(text)
    ids = np.asarray(tok.encode(text), dtype=np.int64)
    out = tmp_path_factory.mktemp("char") / "gpt"
    config = ModelConfig(vocab_size=tok.vocab_size, block_size=96, d_model=16, n_heads=2, n_layers=1)
    train("causal_lm", out, RunConfig(config, TrainConfig.recipe(2, 1e-3, batch_size=2), backend="numpy"),
          data=Splits(ids[:2000], ids[2000:2400], ids[2400:2800]), tokenizer=tok, progress=False)
    return out


def test_sft_command_on_a_jsonl_file_with_resume_and_bad_lines(char_run, tmp_path, capsys):
    from minillm.cli import main
    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps({"messages": m, "task": f"t{i % 2}"}) + "\n" for i, m in enumerate(ROWS * 4)),
                    encoding="utf-8")
    args = ["sft", "--from", str(char_run), "--data", str(data), "--out", str(tmp_path / "run"), "--backend", "numpy",
            "--batch-size", "2", "--held-out", "0.25"]
    assert main([*args, "--steps", "2"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["task"] == "sft" and summary["steps"] == 2 and summary["test"]["n"] == 3
    assert set(summary["test"]["tasks"]) <= {"t0", "t1"}
    assert main(["sft", "--out", str(tmp_path / "run"), "--resume", "--backend", "numpy"]) == 0   # base, data: recorded
    assert json.loads(capsys.readouterr().out)["steps"] == 2
    assert main(["evaluate", str(tmp_path / "run"), "--backend", "numpy"]) == 0
    assert json.loads(capsys.readouterr().out)["data"]["rows"] == 3
    # generate answers the prompt as a user's turn, with the run's template
    from minillm.data.chat_template import apply_chat_template
    from minillm.store.runtime import Runtime
    from minillm.train.generation import TextStream
    stream = TextStream.of_run(tmp_path / "run", "Hi?", Runtime("numpy"), max_new_tokens=3)
    assert stream.prompt_ids == apply_chat_template(stream.tokenizer, DEFAULT_CHAT_TEMPLATE,
                                                    [{"role": "user", "content": "Hi?"}],
                                                    add_generation_prompt=True).ids
    capsys.readouterr()
    assert main(["generate", str(tmp_path / "run"), "--prompt", "Hi?", "--max-new-tokens", "3",
                 "--backend", "numpy"]) == 0
    answer = "".join(TextStream.of_run(tmp_path / "run", "Hi?", Runtime("numpy"), max_new_tokens=3))
    assert capsys.readouterr().out == answer + "\n"          # the answer alone: the prompt is not echoed
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": ROWS[0]}) + "\n" + json.dumps({"messages": [ROWS[0][0]]}) + "\n",
                   encoding="utf-8")
    assert main(["sft", "--from", str(char_run), "--data", str(bad), "--out", str(tmp_path / "bad")]) == 2
    assert "bad.jsonl, line 2: expected at least one assistant turn" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()                                    # nothing half-written


def test_sft_starts_from_the_base_weights(char_run):
    """A step at a learning rate of 1e-12 leaves the model at the base's weights: the task
    loaded them (a model left at its seeded initialisation would differ by order 0.02)."""
    from minillm.train.entry import train
    from minillm.train.run_config import RunConfig
    from minillm.train.training import TrainConfig

    src = read_source(char_run)
    run = train("sft", None, RunConfig(src.config, TrainConfig.recipe(1, 1e-12, batch_size=2, warmup_steps=0),
                                       backend="numpy"), data=[{"task": "t", "messages": m} for m in ROWS * 2],
                base=char_run, progress=False, evaluate_test=False, held_out=0.2)
    state = run.model.state_dict()
    assert max(float(np.abs(state[k] - src.state[k]).max()) for k in state) < 1e-9


def test_answer_accuracy_scores_each_task_and_leaves_room_for_every_answer(char_run, monkeypatch):
    """With a stand-in for generation that answers from a table (and checks it was given room
    for the whole answer and its <eos>), every row is right; answering the wrong row's
    answer, every row is wrong; a row longer than the window is skipped, not scored."""
    import minillm.apps.sft as sft
    from minillm.data.chat_template import apply_chat_template

    src = read_source(char_run)
    rows = [{"task": f"t{i % 2}", "messages": m} for i, m in enumerate(ROWS)]
    rows.append({"task": "long", "messages": [{"role": "user", "content": "a" * 200},
                                              {"role": "assistant", "content": "b"}]})
    answers = {}
    for row in rows[:-1]:
        m = row["messages"]
        prompt = apply_chat_template(src.tokenizer, DEFAULT_CHAT_TEMPLATE, m[:-1], add_generation_prompt=True).ids
        answers[tuple(prompt)] = src.tokenizer.encode(m[-1]["content"]) + [src.tokenizer.eos_id]

    def table(shift):
        def fake(runtime, model, prompts, max_new_tokens, **kwargs):
            keys = [tuple(p) for p in prompts]
            assert all(max_new_tokens >= len(answers[k]) for k in keys)
            return [answers[keys[(i + shift) % len(keys)]] for i in range(len(keys))]
        return fake

    monkeypatch.setattr(sft, "generate", table(0))
    right = sft.answer_accuracy(None, None, src.tokenizer, DEFAULT_CHAT_TEMPLATE, rows, src.config.block_size)
    assert right["exact"] == 1.0 and right["skipped"] == 1 and right["n"] == 3
    assert right["tasks"] == {"t0": {"exact": 1.0, "n": 2}, "t1": {"exact": 1.0, "n": 1}}
    monkeypatch.setattr(sft, "generate", table(1))
    assert sft.answer_accuracy(None, None, src.tokenizer, DEFAULT_CHAT_TEMPLATE, rows,
                               src.config.block_size)["exact"] == 0.0


def test_the_best_checkpoint_is_chosen_on_training_rows_never_on_held_out_ones(char_run, monkeypatch):
    """Validation (which chooses checkpoints/best) is a seeded 5% of the training rows; the
    held-out rows, which the test and evaluate score, are none of them."""
    import minillm.apps.sft as sft
    from minillm.train.entry import train
    from minillm.train.run_config import RunConfig
    from minillm.train.training import TrainConfig

    seen = {}
    real = sft.encode_conversations

    def recording(tok, template, rows, block_size, what="conversations"):
        seen[what] = [json.dumps(r["messages"] if isinstance(r, dict) and "messages" in r else r, sort_keys=True)
                      for r in rows]
        return real(tok, template, rows, block_size, what)

    monkeypatch.setattr(sft, "encode_conversations", recording)
    rows = [{"task": "t", "messages": [{"role": "user", "content": f"{i}?"}, {"role": "assistant", "content": "ok"}]}
            for i in range(40)]
    src = read_source(char_run)
    train("sft", None, RunConfig(src.config, TrainConfig.recipe(1, 1e-12, batch_size=2, warmup_steps=0),
                                 backend="numpy"), data=rows, base=char_run, progress=False,
          evaluate_test=False, held_out=0.25)
    fit, validation, held = (seen["training conversations"], seen["validation conversations"],
                             seen["held-out conversations"])
    assert len(held) == 10 and len(validation) == max(1, round(0.05 * 30)) and len(fit) == 30 - len(validation)
    assert not set(validation) & set(held) and not set(validation) & set(fit) and not set(fit) & set(held)


def test_two_conversations_are_too_few_and_the_error_says_why(char_run):
    from minillm.train.entry import train
    from minillm.train.run_config import RunConfig
    from minillm.train.training import TrainConfig

    src = read_source(char_run)
    with pytest.raises(ValueError, match=r"expected at least 3 conversations \(one held out for the test, one for "
                                         r"validation, one to train on\), got 2"):
        train("sft", None, RunConfig(src.config, TrainConfig.recipe(1, 1e-3, batch_size=2), backend="numpy"),
              data=[{"task": "t", "messages": m} for m in ROWS[:2]], base=char_run, progress=False)
