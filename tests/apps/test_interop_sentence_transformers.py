"""sentence-transformers folders in minillm.apps.interop, against the real package.

A random-weight BERT is built with ``transformers`` (nothing is downloaded), wrapped in
``sentence_transformers.SentenceTransformer`` (Transformer with ``max_seq_length`` /
``do_lower_case``, Pooling in each mode, optionally Normalize), saved, and
``embed_texts`` (both backends) is compared with ``SentenceTransformer(folder).encode``
on texts longer and shorter than ``max_seq_length``. Folders in the older layout
(``sentence_transformers.models.*`` types, ``pooling_mode_*`` booleans,
``max_seq_length`` / ``do_lower_case`` in ``sentence_bert_config.json``) are written by
hand and read by the same package, which still loads them.

Tolerance, float32: 1e-5 absolute plus 1e-5 relative. The weights are drawn at a scale
that makes hidden states O(1) (``test_interop._randomize``), so 1e-5 is ~100 float32 ulps,
the room the different summation orders of NumPy, torch and transformers' attention
need over two layers (``test_interop``'s contract); the relative part covers
mean_sqrt_len_tokens, whose vectors are sqrt(n) ~ 4 times larger than a mean. A text
cut at the wrong length, a wrong pooling or a missing lower-casing is off by > 1e-2.
"""
import json
import os
import shutil

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")           # everything below is local folders
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
st = pytest.importorskip("sentence_transformers")

from minillm.apps.interop import POOLING_MODES, embed_texts, read_hf, sentence_embeddings  # noqa: E402

from parity import assert_close, dump_diff_log  # noqa: E402
from test_interop import TEXTS, _randomize, _tokenizer_files  # noqa: E402

BACKENDS = ("numpy", "torch")
RTOL = ATOL = 1e-5
MAX_SEQ = 16
LONG = " ".join(TEXTS * 2)              # 42 tokens with [CLS] and [SEP]: more than MAX_SEQ
INPUTS = [LONG, TEXTS[0], "Élan!", TEXTS[1] + " " + TEXTS[2].lower()]
ST6_TYPES = ["sentence_transformers.base.modules.transformer.Transformer",
             "sentence_transformers.sentence_transformer.modules.pooling.Pooling",
             "sentence_transformers.base.modules.normalize.Normalize"]
ST5_TYPES = ["sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling",
             "sentence_transformers.models.Normalize"]


@pytest.fixture(scope="module", autouse=True)
def _report_largest_differences():
    """With MINILLM_DIFF_REPORT=path, the largest differences seen are written there."""
    yield
    dump_diff_log()


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    """A cased BERT folder (vocab.txt, tokenizer_config.json, weights), 64 positions."""
    folder = tmp_path_factory.mktemp("bert")
    n = _tokenizer_files(folder, "bert", lowercase=False)
    transformers.BertTokenizer(str(folder / "vocab.txt"), do_lower_case=False).save_pretrained(folder)
    cfg = transformers.BertConfig(vocab_size=n, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=48, max_position_embeddings=64)
    _randomize(transformers.BertModel(cfg), 5).save_pretrained(folder)
    return folder


def _st_folder(bert, folder, pooling="mean", normalize=False, **transformer):
    """Save a SentenceTransformer (sentence-transformers 6) over ``bert`` to ``folder``."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules.normalize import Normalize
    from sentence_transformers.base.modules.transformer import Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    modules = [Transformer(str(bert), **transformer), Pooling(32, pooling_mode=pooling)]
    SentenceTransformer(modules=modules + [Normalize()] * normalize, device="cpu").save(str(folder))
    return folder


def _st5_folder(bert, folder, pooling=("mean",), normalize=False, **sentence_bert_config):
    """The layout sentence-transformers up to 5.3 wrote, by hand: old type names,
    pooling_mode_* booleans, settings in sentence_bert_config.json, an empty 2_Normalize."""
    shutil.copytree(bert, folder)
    modules = [{"idx": i, "name": str(i), "path": path, "type": t}
               for i, (path, t) in enumerate(zip(["", "1_Pooling", "2_Normalize"], ST5_TYPES))]
    (folder / "modules.json").write_text(json.dumps(modules[:3 if normalize else 2]))
    (folder / "sentence_bert_config.json").write_text(json.dumps(sentence_bert_config))
    (folder / "1_Pooling").mkdir()
    legacy = {"cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens",
              "mean": "pooling_mode_mean_tokens", "mean_sqrt_len_tokens": "pooling_mode_mean_sqrt_len_tokens",
              "weightedmean": "pooling_mode_weightedmean_tokens", "lasttoken": "pooling_mode_lasttoken"}
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, **{key: mode in pooling for mode, key in legacy.items()}}))
    if normalize:
        (folder / "2_Normalize").mkdir()
    return folder


def _theirs(folder, texts=INPUTS):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu").encode(texts, convert_to_numpy=True)


def _check(what, folder, texts=INPUTS, **kwargs):
    expected = _theirs(folder, texts)
    for backend in BACKENDS:
        ours = embed_texts(folder, texts, backend=backend, **kwargs)
        assert_close(f"{what} ({backend})", ours, expected, RTOL, ATOL)
    return expected


@pytest.mark.parametrize("pooling", POOLING_MODES)
def test_each_pooling_mode_with_max_seq_length(tmp_path, bert, pooling):
    normalize = POOLING_MODES.index(pooling) % 2 == 1              # cls without, max with, ...
    folder = _st_folder(bert, tmp_path / "st", pooling, normalize, max_seq_length=MAX_SEQ)
    assert [m["type"] for m in json.loads((folder / "modules.json").read_text())] == \
        ST6_TYPES[:3 if normalize else 2]
    ckpt = read_hf(folder)
    assert (ckpt.pooling, ckpt.normalize) == (pooling, normalize)
    expected = _check(f"{pooling} pooling", folder)
    if normalize:
        np.testing.assert_allclose(np.linalg.norm(expected, axis=1), 1.0, rtol=1e-6)


def test_max_seq_length_cuts_long_texts_only(tmp_path, bert):
    """sentence-transformers 6 keeps max_seq_length as tokenizer_config.json's
    model_max_length; version 5 kept it in sentence_bert_config.json. Both are honoured,
    and the cut matters: the long text moves by far more than the tolerance."""
    cut = _check("ST6 max_seq_length 16", _st_folder(bert, tmp_path / "st6", max_seq_length=MAX_SEQ))
    assert json.loads((tmp_path / "st6" / "tokenizer_config.json").read_text())["model_max_length"] == MAX_SEQ
    whole = _check("ST6 no max_seq_length", _st_folder(bert, tmp_path / "whole"))
    old = _check("ST5 max_seq_length 16", _st5_folder(bert, tmp_path / "st5", max_seq_length=MAX_SEQ))
    assert np.abs(cut[0] - whole[0]).max() > 1e-1                  # LONG: 42 tokens, cut to 16
    np.testing.assert_allclose(cut[1:], whole[1:], rtol=1e-5, atol=1e-6)  # the others fit
    np.testing.assert_allclose(old, cut, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"sentence_bert_config.json: max_seq_length 65 is more "
                                         r"than the model's 64 positions"):
        read_hf(_st5_folder(bert, tmp_path / "long", max_seq_length=65))


@pytest.mark.parametrize("lower", [True, False])
def test_do_lower_case_of_a_sentence_transformers_5_folder(tmp_path, bert, lower):
    """The cased vocabulary reads 'The' and 'the' as different tokens."""
    folder = _st5_folder(bert, tmp_path / "st5", pooling=("cls", "mean"), normalize=True,
                         max_seq_length=MAX_SEQ, do_lower_case=lower)
    ckpt = read_hf(folder)
    assert (ckpt.pooling, ckpt.normalize, ckpt.sentence.lowercase) == (("cls", "mean"), True, lower)
    e = _check(f"ST5 do_lower_case={lower}, cls+mean", folder)
    assert e.shape == (len(INPUTS), 64)                           # two modes concatenated
    lowered = _theirs(folder, [t.lower() for t in INPUTS])
    assert (np.abs(e - lowered).max() < 1e-5) == lower


def test_do_lower_case_of_a_sentence_transformers_6_folder(tmp_path, bert):
    """sentence-transformers 6 writes do_lower_case only as a Lowercase step in
    tokenizer.json, which transformers 5 does not read back: the model it loads from the
    folder does not lower-case, and neither does minillm, so both give the same vectors."""
    folder = _st_folder(bert, tmp_path / "st", do_lower_case=True)
    steps = json.loads((folder / "tokenizer.json").read_text())["normalizer"]["normalizers"]
    assert steps[0] == {"type": "Lowercase"}
    assert not read_hf(folder).sentence.lowercase
    _check("ST6 do_lower_case (not kept)", folder)


def test_truncate_dim(tmp_path, bert):
    from sentence_transformers import SentenceTransformer

    _st_folder(bert, tmp_path / "st", "mean", True)
    SentenceTransformer(str(tmp_path / "st"), device="cpu", truncate_dim=8).save(str(tmp_path / "cut"))
    assert json.loads((tmp_path / "cut" / "config_sentence_transformers.json").read_text())["truncate_dim"] == 8
    e = _check("truncate_dim 8", tmp_path / "cut")
    assert e.shape == (len(INPUTS), 8)
    assert np.linalg.norm(e, axis=1).max() < 1.0                  # cut after Normalize, as there


def test_cli_embed_with_a_sentence_transformers_folder(tmp_path, bert, capsys):
    from minillm.cli import main

    folder = _st_folder(bert, tmp_path / "st", "weightedmean", True, max_seq_length=MAX_SEQ)
    expected = _theirs(folder)
    assert main(["embed", "--from-hf", str(folder), "--out", str(tmp_path / "e.npy"), *INPUTS]) == 0
    assert_close("CLI embeddings", np.load(tmp_path / "e.npy"), expected, RTOL, ATOL)
    assert main(["embed", "--from-hf", str(folder), "--pooling", "lasttoken", "--out",
                 str(tmp_path / "last.npy"), *INPUTS]) == 0            # the option overrides the folder's
    assert_close("CLI --pooling lasttoken", np.load(tmp_path / "last.npy"),
                 _theirs(_st_folder(bert, tmp_path / "last", "lasttoken", True, max_seq_length=MAX_SEQ)),
                 RTOL, ATOL)
    capsys.readouterr()


class _Hidden:
    """A stand-in encoder whose hidden states are given."""

    def __init__(self, h):
        self.h = h

    def encode(self, idx, attention_mask=None):
        return self.h


@pytest.mark.parametrize("pooling", [*POOLING_MODES, ("lasttoken", "cls", "max")])
def test_pooling_formulas_with_left_and_right_padding(pooling):
    """sentence_embeddings against sentence-transformers' Pooling module itself, in
    float64 (so only summation order differs: 1e-12), with left padding too, where cls,
    lasttoken and weightedmean must find the first and last real tokens."""
    from sentence_transformers.sentence_transformer.modules import Pooling

    rng = np.random.default_rng(0)
    h = rng.standard_normal((4, 7, 5))
    mask = np.ones((4, 7), np.int64)
    mask[1, 5:] = 0                                                 # right padding
    mask[2, :3] = 0                                                 # left padding
    mask[3, :1], mask[3, 6:] = 0, 0                                 # both
    module = Pooling(5, pooling_mode=pooling)
    with torch.no_grad():
        expected = module({"token_embeddings": torch.from_numpy(h),
                           "attention_mask": torch.from_numpy(mask)})["sentence_embedding"]
    for normalize in (False, True):
        ours = sentence_embeddings(_Hidden(h), None, mask, pooling, normalize)
        theirs = torch.nn.functional.normalize(expected, dim=-1) if normalize else expected
        assert_close(f"{pooling} (normalize={normalize})", ours, theirs.numpy(), 0.0, 1e-12)


# -- refused, by name ------------------------------------------------------------------------

def _edit(path, **changes):
    data = json.loads(path.read_text()) if path.is_file() else {}
    for key, value in changes.items():
        if value is None and key in data:
            del data[key]
        else:
            data[key] = value
    path.write_text(json.dumps(data))


@pytest.fixture(scope="module")
def st6(bert, tmp_path_factory):
    return _st_folder(bert, tmp_path_factory.mktemp("st6") / "st", "mean", True)


REFUSED = [
    ("sentence_bert_config.json", {"foo": 1}, r"sentence_bert_config.json: unknown field 'foo'"),
    ("sentence_bert_config.json", {"processing_kwargs": {"text": {"max_length": 8}}},
     r"expected processing_kwargs empty"),
    ("sentence_bert_config.json", {"model_kwargs": {"torch_dtype": "float16"}}, r"expected model_kwargs empty"),
    ("sentence_bert_config.json", {"transformer_task": "fill-mask"},
     r"expected transformer_task 'feature-extraction', got 'fill-mask'"),
    ("sentence_bert_config.json", {"module_output_name": "sentence_embedding"},
     r"expected module_output_name 'token_embeddings'"),
    ("sentence_bert_config.json", {"document_length": 8}, r"expected document_length null"),
    ("sentence_bert_config.json", {"max_seq_length": 1}, r"expected max_seq_length an int >= 2"),
    ("1_Pooling/config.json", {"pooling_mode": "median"}, r"expected pooling_mode among .*got 'median'"),
    ("1_Pooling/config.json", {"pooling_mode_median": True}, r"unknown field 'pooling_mode_median'"),
    ("1_Pooling/config.json", {"embedding_dimension": 16}, r"expected embedding_dimension 32 .*got 16"),
    ("2_Normalize/config.json", {"module_input_name": "token_embeddings"},
     r"expected module_input_name 'sentence_embedding'"),
    ("config_sentence_transformers.json", {"prompts": {"query": "query: "}, "default_prompt_name": "query"},
     r"default_prompt_name 'query' puts a prompt before every text"),
    ("config_sentence_transformers.json", {"model_type": "SparseEncoder"},
     r"expected model_type 'SentenceTransformer', got 'SparseEncoder'"),
    ("config_sentence_transformers.json", {"truncate_dim": 0}, r"expected truncate_dim an int >= 1"),
]


@pytest.mark.parametrize("file, change, match", REFUSED, ids=[f"{f}:{next(iter(c))}" for f, c, _ in REFUSED])
def test_settings_minillm_does_not_compute_are_refused(tmp_path, st6, file, change, match):
    folder = shutil.copytree(st6, tmp_path / "st")
    _edit(folder / file, **change)
    with pytest.raises(ValueError, match=match):
        read_hf(folder)


def test_settings_that_change_nothing_are_accepted(tmp_path, st6):
    """unpad_inputs picks flash attention's kernels, similarity_fn_name scores pairs,
    include_prompt needs a prompt, an empty default prompt adds nothing."""
    folder = shutil.copytree(st6, tmp_path / "st")
    _edit(folder / "sentence_bert_config.json", unpad_inputs=False, model_args={})
    _edit(folder / "1_Pooling" / "config.json", include_prompt=False)
    _edit(folder / "config_sentence_transformers.json", similarity_fn_name="dot", default_prompt_name="document")
    _check("accepted settings", folder)


def test_module_lists_are_refused_by_name(tmp_path, st6):
    folder = shutil.copytree(st6, tmp_path / "st")
    modules = json.loads((folder / "modules.json").read_text())
    dense = {"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.base.modules.dense.Dense"}
    (folder / "modules.json").write_text(json.dumps(modules + [dense]))
    with pytest.raises(ValueError, match=r"modules.json: unknown module type "
                                         r"'sentence_transformers.base.modules.dense.Dense'"):
        read_hf(folder)
    (folder / "modules.json").write_text(json.dumps([modules[0], modules[2], modules[1]]))
    with pytest.raises(ValueError, match=r"expected the modules Transformer, Pooling and optionally "
                                         r"Normalize, in this order, got \['Transformer', 'Normalize', 'Pooling'\]"):
        read_hf(folder)
    (folder / "modules.json").write_text(json.dumps(modules[:1]))
    with pytest.raises(ValueError, match=r"got \['Transformer'\]"):
        read_hf(folder)
