"""--lora r,alpha,targets on a training command (finetune here; sft and dpo share it):
only the adapters (and a classifier's new head) train, the frozen weights stay equal bit
for bit, the run records its adapters so that --resume and load_run attach them again,
a GPT's checkpoint holds them in PEFT's layout, and bad values are clear errors."""
import json

import numpy as np
import pytest

from minillm.cli import main
from minillm.core.lora import LoRAConfig
from minillm.store import model_io
from minillm.store.lora_adapters import add_lora, adapters
from minillm.store.peft_adapters import CONFIG_FILE, WEIGHTS_FILE, load_adapters
from minillm.store.runs import checkpoint_folder, load_run
from minillm.store.runtime import Runtime
from training_helpers import interrupt_at  # noqa: E402  (tests/, beside conftest.py)

TINY = ["--d-model", "16", "--n-layers", "1", "--n-heads", "2", "--block-size", "16", "--batch-size", "4"]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    out = tmp_path_factory.mktemp("enc") / "enc"
    assert main(["pretrain", "--task", "masked_lm", "--corpus", "sentiment", "--tokenizer", "char",
                 "--backend", "numpy", "--steps", "2", "--out", str(out), *TINY]) == 0
    return out


def _weights(folder):
    model, _ = model_io.load_model(folder, "numpy")
    return {n: p.data.copy() for n, p in model.named_parameters()}




@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_finetune_lora_trains_the_adapters_and_the_head_only_and_resumes(encoder, tmp_path, backend, capsys,
                                                                         monkeypatch):
    out, full = tmp_path / "cls", tmp_path / "full"
    base = ["finetune", "--pretrained", str(encoder), "--backend", backend, "--batch-size", "8",
            "--lora", "4, 8, W_Q,W_V", "--steps", "5"]
    with monkeypatch.context() as m:
        interrupt_at(m, 3)
        assert main([*base, "--out", str(out)]) == 130
    capsys.readouterr()
    before = _weights(checkpoint_folder(encoder))          # what --pretrained loads
    after = _weights(out / "checkpoints" / "last")
    adapter_names = {n for n in after if ".lora_" in n}
    assert adapter_names == {"blocks.0.attn.lora_W_Q.A", "blocks.0.attn.lora_W_Q.B",
                             "blocks.0.attn.lora_W_V.A", "blocks.0.attn.lora_W_V.B"}
    frozen = [n for n in before if n in after]          # all but the masked-LM head
    assert len(frozen) == 20 and all(n.startswith(("tok_emb", "pos_emb", "blocks", "ln_f")) for n in frozen)
    for name in frozen:               # the encoder's weights, unchanged to the bit
        assert np.array_equal(before[name], after[name]), name
    assert np.abs(after["blocks.0.attn.lora_W_Q.B"]).max() > 0       # B left zero: it trained
    recorded = json.loads((out / "run_config.json").read_text())["train"]["lora"]
    assert recorded == "4,8,W_Q,W_V"

    # resume: the adapters come back from the record (the option left out) and the run
    # ends where one never interrupted does
    assert main(["finetune", "--out", str(out), "--resume", "--backend", backend]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 5 and summary["run_config"]["train"]["lora"] == "4,8,W_Q,W_V"
    assert main([*base, "--out", str(full)]) == 0
    capsys.readouterr()
    resumed, straight = _weights(out / "checkpoints" / "last"), _weights(full / "checkpoints" / "last")
    assert resumed.keys() == straight.keys()
    for name in resumed:
        assert np.array_equal(resumed[name], straight[name]), name
    for name in frozen:
        assert np.array_equal(before[name], resumed[name]), name

    # load_run attaches them again
    run = load_run(out, Runtime(backend), checkpoint="last")
    assert sorted(adapters(run.model)) == ["blocks.0.attn.W_Q", "blocks.0.attn.W_V"]

    # another --lora on resume is refused, naming the recorded value
    assert main(["finetune", "--out", str(out), "--resume", "--backend", backend, "--lora", "2,8,W_Q"]) == 2
    assert "4,8,W_Q,W_V" in capsys.readouterr().err


def test_a_gpt_checkpoint_holds_its_adapters_in_peft_layout(tmp_path):
    from minillm.reference import GPT
    from minillm import ModelConfig
    cfg = ModelConfig(vocab_size=11, block_size=8, d_model=8, n_heads=2, n_layers=2, dtype="float64")
    model = GPT(cfg, seed=0)
    add_lora(model, ("W_Q", "W1"), r=2, alpha=4.0)
    rng = np.random.default_rng(1)
    for _, _, a in adapters(model).values():
        a.B.data[...] = rng.standard_normal(a.B.data.shape)
    model_io.save_checkpoint(tmp_path / "ckpt", model)
    assert (tmp_path / "ckpt" / CONFIG_FILE).is_file() and (tmp_path / "ckpt" / WEIGHTS_FILE).is_file()
    again = GPT(cfg, seed=0)
    load_adapters(again, tmp_path / "ckpt")
    idx = rng.integers(0, 11, size=(2, 8))
    np.testing.assert_array_equal(model(idx)[0], again(idx)[0])   # the same adapters, read back from PEFT's files
    loaded, _ = model_io.load_model(tmp_path / "ckpt", "numpy")     # and from the checkpoint's record
    np.testing.assert_array_equal(model(idx)[0], loaded(idx)[0])


@pytest.mark.parametrize("value, message", [
    ("8", r"expected r,alpha,targets"),
    ("x,16,W_Q", r"the rank r an integer, got r='x'"),
    ("8,inf,W_Q", r"alpha a finite number"),
    ("0,16,W_Q", r"rank r to be an int >= 1, got 0"),
])
def test_lora_option_refuses_bad_values(value, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["finetune", "--out", "x", "--lora", value])
    assert exit_.value.code == 2
    assert __import__("re").search(message, capsys.readouterr().err)


@pytest.mark.parametrize("value, message", [
    ("20,16,W_Q", r"LoRA on blocks\.0\.attn\.W_Q: .*1\.\.16 \(d_in=16, d_out=16\), got r=20"),
    ("4,16,W_Z", r"LoRA target 'W_Z' matches no projection .* blocks\.0\.attn\.W_Q, .*blocks\.0\.ffn\.W1"),
])
def test_lora_rank_and_targets_are_checked_against_the_model(encoder, tmp_path, value, message, capsys):
    out = tmp_path / "cls"
    assert main(["finetune", "--pretrained", str(encoder), "--backend", "numpy", "--out", str(out),
                 "--steps", "2", "--batch-size", "8", "--lora", value]) == 2
    assert __import__("re").search(message, capsys.readouterr().err)
    assert not (out / "checkpoints").exists()                     # nothing half-written


def test_lora_config_is_written_one_way():
    assert str(LoRAConfig.parse(" 8 , 16.0 ,W_Q, W_V")) == "8,16,W_Q,W_V"
    assert LoRAConfig.parse("8,0.5,blocks.[01].attn.W_*").targets == ("blocks.[01].attn.W_*",)


def test_the_commands_that_tune_a_trained_model_take_lora():
    from minillm.cli import build_parser
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices
    for command in ("finetune", "sft", "dpo"):
        assert "--lora" in {s for a in sub[command]._actions for s in a.option_strings}, command
    assert "--lora" not in {s for a in sub["pretrain"]._actions for s in a.option_strings}
