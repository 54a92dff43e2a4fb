"""``minillm pretrain --arch``: a preset of the model's design (issue 25, item 5). The
"llama" preset trains, records its fields in the run, resumes exactly (the preset read back
from the recorded config), generates; the help lists what each preset sets."""
import json

import pytest

import minillm.train.training as training
from minillm.cli import main
from minillm.core.config import ARCHITECTURES, ModelConfig, architecture_fields, architecture_of

TINY = ["--d-model", "16", "--n-layers", "1", "--n-heads", "2", "--block-size", "16", "--batch-size", "4"]
LLAMA = {"norm": "rms", "activation": "swiglu", "positional": "rope", "rope_layout": "half", "bias": False,
         "qk_norm": False, "n_kv_heads": 1}                  # n_heads 2: one key/value head for both


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(("the cat sat on the mat. the dog sat on the log. " * 60).strip(), encoding="utf-8")
    return path


def _pretrain(corpus_file, out, *extra):
    return main(["pretrain", "--corpus", str(corpus_file), "--tokenizer", "char", "--backend", "numpy",
                 "--steps", "4", "--eval-every", "2", "--out", str(out), *extra])


def _losses(run):
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_llama_trains_records_its_fields_resumes_exactly_and_generates(corpus_file, tmp_path, monkeypatch,
                                                                       capsys):
    assert _pretrain(corpus_file, tmp_path / "whole", "--arch", "llama", *TINY) == 0
    config = json.loads((tmp_path / "whole" / "run.json").read_text())["model_config"]
    assert {k: config[k] for k in LLAMA} == LLAMA

    # the same run stopped after step 2 (Ctrl-C in the trainer), then `--resume` alone: the
    # preset and every other option come back from the run, and the losses are the whole
    # run's exactly (one backend, the same operations on the same arrays)
    init = training.Trainer.__init__

    def stopping(self, *args, **kwargs):
        init(self, *args, **kwargs)

        def stop(step, loss):
            if step == 2:
                raise KeyboardInterrupt
        self.on_step = stop
    monkeypatch.setattr(training.Trainer, "__init__", stopping)
    assert _pretrain(corpus_file, tmp_path / "part", "--arch", "llama", *TINY) == 130
    monkeypatch.setattr(training.Trainer, "__init__", init)
    assert main(["pretrain", "--backend", "numpy", "--out", str(tmp_path / "part"), "--resume"]) == 0
    assert _losses(tmp_path / "part") == _losses(tmp_path / "whole") and len(_losses(tmp_path / "whole")) == 4
    assert json.loads((tmp_path / "part" / "run.json").read_text())["model_config"] == config

    capsys.readouterr()
    assert main(["generate", str(tmp_path / "part"), "--prompt", "the ", "--max-new-tokens", "20",
                 "--backend", "torch"]) == 0      # past block_size 16: the cache slides
    assert capsys.readouterr().out.startswith("the ")


def test_resume_with_another_arch_is_refused(corpus_file, tmp_path, capsys):
    assert _pretrain(corpus_file, tmp_path / "run", "--arch", "llama", "--steps", "2", *TINY) == 0
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text()
    capsys.readouterr()
    assert main(["pretrain", "--backend", "numpy", "--out", str(tmp_path / "run"), "--resume",
                 "--arch", "gpt2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "it was started with --arch llama, got --arch gpt2;" in err, err
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == metrics          # left as it was


def test_activation_and_positional_override_the_preset(corpus_file, tmp_path):
    assert _pretrain(corpus_file, tmp_path / "run", "--arch", "llama", "--activation", "gelu",
                     "--positional", "learned", "--steps", "1", *TINY) == 0
    config = json.loads((tmp_path / "run" / "run.json").read_text())["model_config"]
    assert (config["activation"], config["positional"], config["norm"], config["bias"]) == ("gelu", "learned",
                                                                                           "rms", False)
    assert config["rope_layout"] == "interleaved"        # read only with RoPE: the preset's not applied


def test_gpt2_is_the_default_and_the_classic_config():
    """--arch gpt2 builds the config a ModelConfig's defaults are (n_kv_heads 0: n_heads)."""
    assert ModelConfig(**architecture_fields("gpt2", 4)) == ModelConfig()


@pytest.mark.parametrize("n_heads", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_each_preset_is_read_back_from_its_config(name, n_heads):
    fields = architecture_fields(name, n_heads)
    cfg = ModelConfig(d_model=8 * n_heads, n_heads=n_heads, **fields)
    assert architecture_of(cfg) == name
    expected = n_heads // 2 if name == "llama" and n_heads % 2 == 0 else n_heads     # GQA where 2 divides
    assert cfg.kv_heads == expected


def test_a_config_of_no_preset_is_none():
    assert architecture_of(ModelConfig(norm="rms", qk_norm=True)) is None


def test_help_lists_what_each_preset_sets(capsys):
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    help_ = " ".join(capsys.readouterr().out.split())
    for name, fields in ARCHITECTURES.items():
        assert f"{name}:" in help_
        for key, value in fields.items():
            if key != "kv_group":
                assert f"{key}={value}" in help_, (name, key)
    assert "n_kv_heads=n_heads/2" in help_
