"""Tokenizer folders in every layout transformers 4 and 5 write, with every setting that
changes the ids, against the installed ``transformers`` (5.x): ``read_tokenizer_folder``
gives the ids ``AutoTokenizer.from_pretrained(folder).encode`` gives, or refuses the folder
naming the file and the field (issue 28.5).

The folders are built offline: a tiny byte-level BPE and a tiny WordPiece trained here with
the ``tokenizers`` library, wrapped in ``transformers``' classes and saved with
``save_pretrained`` (the 5.x layouts), or written as transformers 4 wrote them (vocab files
beside tokenizer.json, ``added_tokens_decoder`` and ``special_tokens_map.json``). Agreement is
exact: ids are integers.
"""
import json
import logging
import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from minillm.data.hf_tokenizers import GPT2Tokenizer, WordPieceTokenizer, read_tokenizer_folder  # noqa: E402

from test_hf_tokenizers import CORPUS, SAMPLE  # noqa: E402

AddedToken = transformers.AddedToken
ADDED = ["<tool>", "NewTok", "<Sp>", "<sp>"]              # the added tokens some folders have
TEXTS = SAMPLE + [
    "hi <tool> there<|endoftext|>x", "a<|endoftext|>", "<|endoftext|> x", "  <|endoftext|>  ",
    "the newtok NEWTOK NewTok x", "a  <Sp>  b <Sp>c", "a <sp> b", "[MASK]the [mask] [CLS]x[SEP]",
    "<tool><tool> <tool>\t<tool>", "中文 English 日本", "x\u3000<Sp>\u3000y",
]


def _ids_agree(folder, texts=TEXTS, kind=None, theirs_class=None):
    """``theirs_class``: for a folder that names no class (AutoTokenizer cannot tell), the
    class its vocabulary files are for."""
    ours = read_tokenizer_folder(folder)
    theirs = (theirs_class or transformers.AutoTokenizer).from_pretrained(str(folder))
    if kind is not None:
        assert isinstance(ours, kind)
    for text in texts:
        for special in (True, False):
            expected = theirs.encode(text, add_special_tokens=special)
            got = ours.encode(text, add_special_tokens=special)
            assert got == expected, (folder.name, text, special, theirs.convert_ids_to_tokens(expected))
    return ours, theirs


# -- the tokenizers, trained here ------------------------------------------------------------

@pytest.fixture(scope="module")
def bpe_files(tmp_path_factory):
    """vocab.json + merges.txt, as the tokenizers library's save_model writes them."""
    folder = tmp_path_factory.mktemp("bpe")
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS, vocab_size=600, min_frequency=1,
                            special_tokens=["<|endoftext|>"], show_progress=False)
    bpe.save_model(str(folder))
    return folder


@pytest.fixture(scope="module")
def wordpiece_files(tmp_path_factory):
    """vocab.txt (uncased training: the lower-case pieces; cased texts reach [UNK] less)."""
    folder = tmp_path_factory.mktemp("wordpiece")
    wp = tokenizers.BertWordPieceTokenizer(lowercase=False, strip_accents=False)
    wp.train_from_iterator(CORPUS + [c.lower() for c in CORPUS], vocab_size=500, min_frequency=1,
                           show_progress=False)
    wp.save_model(str(folder))
    return folder


def _gpt2(bpe_files, **options):
    return transformers.GPT2Tokenizer.from_pretrained(str(bpe_files), **options)


def _bert(wordpiece_files, **options):
    return transformers.BertTokenizer(str(wordpiece_files / "vocab.txt"), **options)


def _saved(tok, folder):
    tok.save_pretrained(folder)
    return folder


def _as_transformers_4(folder, vocab_files, fast_class):
    """The same folder as transformers 4 wrote it: the vocabulary files beside
    tokenizer.json, tokenizer_class ...Fast, the added tokens in added_tokens_decoder and
    the special tokens in special_tokens_map.json."""
    for f in vocab_files.iterdir():
        shutil.copy(f, folder / f.name)
    tj = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    for key in ("backend", "is_local", "local_files_only"):
        config.pop(key, None)
    config["tokenizer_class"] = fast_class
    config["added_tokens_decoder"] = {str(a["id"]): {k: v for k, v in a.items() if k != "id"}
                                      for a in tj["added_tokens"]}
    config["clean_up_tokenization_spaces"] = False
    specials = {k: v for k, v in config.items() if k.endswith("_token") and v is not None}
    (folder / "special_tokens_map.json").write_text(json.dumps(specials), encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


# -- GPT-2's byte-level BPE ------------------------------------------------------------------

def test_gpt2_vocab_files_alone(bpe_files):
    ours, _ = _ids_agree(bpe_files, kind=GPT2Tokenizer, theirs_class=transformers.GPT2Tokenizer)
    assert ours.eos_id == ours.bos_id == ours.vocab["<|endoftext|>"]


def test_gpt2_saved_by_transformers_5(bpe_files, tmp_path):
    """The issue's failure: tokenizer.json + tokenizer_config.json, no vocab.json/merges.txt."""
    folder = _saved(_gpt2(bpe_files), tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
    _ids_agree(folder, kind=GPT2Tokenizer)


@pytest.mark.parametrize("setting", [
    {"add_prefix_space": True},
    {"add_bos_token": True, "add_eos_token": True},
    {"add_bos_token": True},
    {"split_special_tokens": True},
], ids=lambda s: "-".join(s))
def test_gpt2_settings(bpe_files, tmp_path, setting):
    _ids_agree(_saved(_gpt2(bpe_files, **setting), tmp_path))


def _gpt2_with_added(bpe_files):
    tok = _gpt2(bpe_files)
    tok.add_tokens(["<tool>", AddedToken("NewTok", lstrip=True, rstrip=False, normalized=False)])
    tok.add_special_tokens({"additional_special_tokens": [AddedToken("<Sp>", lstrip=True, rstrip=True)]})
    return tok


def test_gpt2_added_and_special_tokens(bpe_files, tmp_path):
    ours, theirs = _ids_agree(_saved(_gpt2_with_added(bpe_files), tmp_path))
    assert ours.vocab_size == len(theirs.get_vocab())
    ids = ours.encode("a <Sp> b <tool>")
    assert ours.decode(ids, skip_special_tokens=True) == theirs.decode(ids, skip_special_tokens=True)


def test_gpt2_as_transformers_4_wrote_it(bpe_files, tmp_path):
    folder = _as_transformers_4(_saved(_gpt2_with_added(bpe_files), tmp_path), bpe_files,
                                "GPT2TokenizerFast")
    assert {"vocab.json", "merges.txt", "special_tokens_map.json"} <= {p.name for p in folder.iterdir()}
    _ids_agree(folder, kind=GPT2Tokenizer)


def test_gpt2_tokenizer_json_read_whole(bpe_files, tmp_path):
    """PreTrainedTokenizerFast (TokenizersBackend in 5): tokenizer.json is the whole
    tokenizer: its pre-tokenizer's add_prefix_space, its post-processor's template."""
    raw = tokenizers.Tokenizer.from_file(str(_saved(_gpt2(bpe_files), tmp_path / "a") / "tokenizer.json"))
    raw.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=True)
    raw.post_processor = tokenizers.processors.TemplateProcessing(
        single="<|endoftext|> $A <|endoftext|>", special_tokens=[("<|endoftext|>", 0)])
    raw.add_tokens(["<tool>"])
    folder = _saved(transformers.PreTrainedTokenizerFast(tokenizer_object=raw), tmp_path / "b")
    assert json.loads((folder / "tokenizer_config.json").read_text())["tokenizer_class"] == "TokenizersBackend"
    ours, _ = _ids_agree(folder, kind=GPT2Tokenizer)
    assert ours.add_prefix_space and ours.prefix == ours.suffix == (0,)


def test_gpt2_model_folder_without_tokenizer_config(bpe_files, tmp_path):
    """An old hub folder: vocab files and the model's config.json, whose model_type picks
    the class."""
    for f in bpe_files.iterdir():
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    _ids_agree(tmp_path, kind=GPT2Tokenizer)


# -- BERT's WordPiece ------------------------------------------------------------------------

def test_bert_vocab_txt_alone(wordpiece_files):
    _ids_agree(wordpiece_files, kind=WordPieceTokenizer, theirs_class=transformers.BertTokenizer)


@pytest.mark.parametrize("setting", [
    {},
    {"do_lower_case": False},
    {"do_lower_case": False, "strip_accents": True},
    {"do_lower_case": True, "strip_accents": False},
    {"tokenize_chinese_chars": False},
    {"split_special_tokens": True},
], ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()) or "default")
def test_bert_settings(wordpiece_files, tmp_path, setting):
    folder = _saved(_bert(wordpiece_files, **setting), tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
    _ids_agree(folder, kind=WordPieceTokenizer)


def _bert_with_added(wordpiece_files, **options):
    tok = _bert(wordpiece_files, **options)
    tok.add_tokens(["NewTok", AddedToken("<Sp>", lstrip=True, rstrip=True, normalized=False)])
    tok.add_special_tokens({"additional_special_tokens": ["<tool>"]})
    return tok


@pytest.mark.parametrize("lowercase", [True, False])
def test_bert_added_and_special_tokens(wordpiece_files, tmp_path, lowercase):
    """A normalized added token is matched in the lower-cased text ("NEWTOK" is "newtok");
    one that is not, only as written; lstrip/rstrip take the spaces around it."""
    ours, theirs = _ids_agree(_saved(_bert_with_added(wordpiece_files, do_lower_case=lowercase), tmp_path))
    assert ours.vocab_size == len(theirs.get_vocab())


def test_bert_as_transformers_4_wrote_it(wordpiece_files, tmp_path):
    folder = _as_transformers_4(_saved(_bert_with_added(wordpiece_files), tmp_path), wordpiece_files,
                                "BertTokenizerFast")
    assert {"vocab.txt", "special_tokens_map.json"} <= {p.name for p in folder.iterdir()}
    _ids_agree(folder, kind=WordPieceTokenizer)


def test_bert_tokenizer_json_read_whole(wordpiece_files, tmp_path):
    """TokenizersBackend: BertNormalizer's options and the post-processor come from
    tokenizer.json (here cased, accents stripped, no CJK splitting, [SEP] only)."""
    raw = tokenizers.Tokenizer.from_file(str(_saved(_bert(wordpiece_files), tmp_path / "a") / "tokenizer.json"))
    raw.normalizer = tokenizers.normalizers.BertNormalizer(lowercase=False, strip_accents=True,
                                                           handle_chinese_chars=False)
    sep = raw.token_to_id("[SEP]")
    raw.post_processor = tokenizers.processors.TemplateProcessing(single="$A [SEP]",
                                                                  special_tokens=[("[SEP]", sep)])
    folder = _saved(transformers.PreTrainedTokenizerFast(tokenizer_object=raw), tmp_path / "b")
    ours, _ = _ids_agree(folder, kind=WordPieceTokenizer)
    assert (ours.lowercase, ours.strip_accents, ours.handle_chinese_chars) == (False, True, False)
    assert ours.prefix == () and ours.suffix == (sep,)


def test_truncation_and_padding_in_tokenizer_json_change_no_id(wordpiece_files, tmp_path):
    """sentence-transformers' folders keep a truncation (128) and padding in tokenizer.json;
    transformers resets both at every call, so ``encode`` neither cuts nor pads."""
    folder = _saved(_bert(wordpiece_files), tmp_path)
    tj = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    tj["truncation"] = {"direction": "Right", "max_length": 8, "strategy": "LongestFirst", "stride": 0}
    tj["padding"] = {"strategy": {"Fixed": 16}, "direction": "Right", "pad_to_multiple_of": None,
                     "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"}
    (folder / "tokenizer.json").write_text(json.dumps(tj), encoding="utf-8")
    ours, _ = _ids_agree(folder)
    assert len(ours.encode(CORPUS[0])) > 16


def test_a_normalizer_transformers_5_ignores_is_named(wordpiece_files, tmp_path, caplog):
    """BertTokenizer rebuilds its normalizer from tokenizer_config.json; a tokenizer.json
    that says otherwise (sentence-transformers 6's do_lower_case) is followed as transformers
    5 follows it, and the field is named in a warning."""
    folder = _saved(_bert(wordpiece_files, do_lower_case=False), tmp_path)
    tj = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    tj["normalizer"] = {"type": "Sequence", "normalizers": [tj["normalizer"], {"type": "Lowercase"}]}
    (folder / "tokenizer.json").write_text(json.dumps(tj), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="minillm"):
        ours, _ = _ids_agree(folder)
    assert not ours.lowercase
    assert "tokenizer.json: normalizer is" in caplog.text and "ignores it" in caplog.text


# -- drawn text, with the added tokens in it -------------------------------------------------

_pieces = st.one_of(st.text(st.characters(blacklist_categories=("Cs",), max_codepoint=0x05FF), max_size=6),
                    st.sampled_from(ADDED + ["<|endoftext|>", "[CLS]", "[MASK]", " ", "  ", "\t",
                                             "中", "NEWTOK", "newtok", "ß", "É"]))
_drawn = st.lists(_pieces, max_size=8).map("".join)


@pytest.fixture(scope="module")
def drawn_pairs(bpe_files, wordpiece_files, tmp_path_factory):
    pairs = []
    for name, tok in (("gpt2", _gpt2_with_added(bpe_files)),
                      ("gpt2-prefix", _gpt2(bpe_files, add_prefix_space=True)),
                      ("bert", _bert_with_added(wordpiece_files)),
                      ("bert-cased", _bert_with_added(wordpiece_files, do_lower_case=False))):
        folder = _saved(tok, tmp_path_factory.mktemp(name))
        pairs.append((read_tokenizer_folder(folder), transformers.AutoTokenizer.from_pretrained(str(folder))))
    return pairs


@settings(max_examples=150, deadline=None)
@given(text=_drawn)
def test_drawn_text_with_added_tokens(drawn_pairs, text):
    for ours, theirs in drawn_pairs:
        assert ours.encode(text) == theirs.encode(text), (ours, text)


# -- refused, by name ------------------------------------------------------------------------

def _edit(folder, name, change):
    path = folder / name
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")


REFUSALS = {  # what is changed in a transformers-5 folder -> the message that names it
    "another class": ("tokenizer_config.json", lambda c: c.update(tokenizer_class="T5Tokenizer"),
                      r"tokenizer_config.json: tokenizer_class 'T5Tokenizer' is not read"),
    "unknown setting": ("tokenizer_config.json", lambda c: c.update(do_something=True),
                        r"tokenizer_config.json: field 'do_something' is not read by minillm"),
    "single_word": ("tokenizer.json",
                    lambda j: j["added_tokens"][0].update(single_word=True),
                    r"tokenizer.json: added_tokens '<\|endoftext\|>' has single_word true"),
    "BPE dropout": ("tokenizer.json", lambda j: j["model"].update(dropout=0.1),
                    r"tokenizer.json: expected model.dropout None .*got 0.1"),
    "BertTokenizer over BPE": ("tokenizer_config.json", lambda c: c.update(tokenizer_class="BertTokenizer"),
                               r"tokenizer_class makes it a 'BertTokenizer', but tokenizer.json's "
                               r"model.type is 'BPE'"),
    "special token nowhere": ("tokenizer_config.json", lambda c: c.update(pad_token="<pad>"),
                              r"tokenizer_config.json: the special token '<pad>' is in neither"),
}
WHOLE_REFUSALS = {  # the same, in a folder whose tokenizer.json is read whole
    "normalizer": (lambda j: j.update(normalizer={"type": "NFKC"}),
                   r"tokenizer.json: normalizer \{'type': 'NFKC'\} is not read by minillm \(it reads "
                   r"none \(GPT-2, Llama 3\) or NFC"),
    "no regex": (lambda j: j["pre_tokenizer"].update(use_regex=False),
                 r"tokenizer.json: pre_tokenizer .*'use_regex': False.* is not read by minillm \(it "
                 r"reads ByteLevel with use_regex true"),
    # byte fallback makes it Llama 2's SentencePiece BPE, whose pre-tokenizer is Metaspace
    "byte fallback": (lambda j: j["model"].update(byte_fallback=True),
                      r"tokenizer.json: pre_tokenizer .*'ByteLevel'.* is not read by minillm \(it "
                      r"reads Metaspace"),
    "post-processor": (lambda j: j.update(post_processor={"type": "Unknown"}),
                       r"tokenizer.json: post_processor type 'Unknown' is not read"),
    "model": (lambda j: j.update(model={"type": "Unigram", "vocab": [["a", 0.0]], "unk_id": 0}),
              r"tokenizer.json: model.type 'Unigram' is not read by minillm"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refused_by_name(bpe_files, tmp_path, case):
    name, change, message = REFUSALS[case]
    folder = _saved(_gpt2(bpe_files), tmp_path)
    read_tokenizer_folder(folder)                       # read before the change
    _edit(folder, name, change)
    with pytest.raises(ValueError, match=message):
        read_tokenizer_folder(folder)


@pytest.mark.parametrize("case", sorted(WHOLE_REFUSALS))
def test_refused_by_name_when_read_whole(bpe_files, tmp_path, case):
    change, message = WHOLE_REFUSALS[case]
    raw = tokenizers.Tokenizer.from_file(str(_saved(_gpt2(bpe_files), tmp_path / "a") / "tokenizer.json"))
    folder = _saved(transformers.PreTrainedTokenizerFast(tokenizer_object=raw), tmp_path / "b")
    read_tokenizer_folder(folder)
    _edit(folder, "tokenizer.json", change)
    with pytest.raises(ValueError, match=message):
        read_tokenizer_folder(folder)


def test_the_cli_reader_takes_a_transformers_5_gpt2_folder(bpe_files, tmp_path):
    """``minillm generate --from-hf`` reads its tokenizer with load_hf_tokenizer."""
    from minillm.apps.interop import load_hf_tokenizer

    tok = load_hf_tokenizer(_saved(_gpt2(bpe_files), tmp_path))
    assert isinstance(tok, GPT2Tokenizer) and tok.eos_id == tok.vocab["<|endoftext|>"]
