"""The tokenizers of Llama 3, Qwen 2 and Llama 2 folders agree with ``transformers`` 5
(``AutoTokenizer.from_pretrained(folder)``, the Rust ``tokenizers`` library underneath):
``read_tokenizer_folder`` gives the same ids, with and without special tokens, on fixed and
drawn texts, and decoding gives the text ``tokenizers`` gives (issue 25.3).

The folders are built offline: tiny BPEs trained here with the ``tokenizers`` library in the
configuration of the real ``tokenizer.json`` files (transformers' ``convert_slow_tokenizer``:
``LlamaConverter``, ``Qwen2Converter``; Llama 3's tiktoken conversion):

- Llama 3: no normalizer; ``Split`` on Llama 3's pattern (``Isolated``) then ``ByteLevel``
  without its own pattern; BPE with ``ignore_merges``; ``<|begin_of_text|>`` put first by a
  ``TemplateProcessing`` post-processor; read whole (``PreTrainedTokenizerFast``).
- Qwen 2: ``NFC``; ``Split`` on Qwen's pattern (one digit a number) then ``ByteLevel``; no
  BOS; ``tokenizer_class`` ``Qwen2Tokenizer``, which transformers 5 builds itself.
- Llama 2 / TinyLlama: SentencePiece BPE with byte fallback (``<0x00>`` .. ``<0xFF>`` at ids
  3..258), ``<s>`` first; read whole with the normalizer of transformers 4's conversion or
  with ``Metaspace``, or as ``LlamaTokenizer``, which transformers 5 builds itself.

Agreement is exact: ids are integers.
"""
import json
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, processors, trainers  # noqa: E402

from minillm.data.hf_tokenizers import (GPT2Tokenizer, SentencePieceBPETokenizer,  # noqa: E402
                                        read_tokenizer_folder)

from test_hf_tokenizers import CORPUS, SAMPLE, _combined, _texts  # noqa: E402

# the pre-tokenizer patterns of Llama 3's and Qwen 2's tokenizer.json
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                  r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                   "<|end_header_id|>", "<|eot_id|>"]
QWEN2_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
LLAMA2_SPECIALS = ["<unk>", "<s>", "</s>"]
BYTES = [f"<0x{b:02X}>" for b in range(256)]
WHOLE_WORD = "Ġzyzzyva"     # in Llama 3's vocabulary without the merges that make it

TEXTS = SAMPLE + [
    "Hello world", " Hello  world", "  two leading spaces", "trailing ", "x\n\ny\r\nz \n",
    "12345678 1234 0.5", "It'S YOU'LL We'Re", "e\u0301t\u00e9 A\u030a \u212b",   # NFC changes these
    "zyzzyva zyzzyva!", "<|begin_of_text|>Hi<|eot_id|>", "<|im_start|>user\nhi<|im_end|>\n",
    "<s>Hi</s> <s> x", "a<s> b", "<unk>", "[INST] hi [/INST]", "héllo 😀 x \U0001F9EA",
]


def _save(tok, folder, **config):
    """``tok`` wrapped in transformers' class and saved; ``config`` then set in (or, as
    ``None``, removed from) tokenizer_config.json."""
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok).save_pretrained(str(folder))
    path = folder / "tokenizer_config.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(config)
    path.write_text(json.dumps({k: v for k, v in data.items() if v is not None}), encoding="utf-8")
    return folder


def _byte_level(pattern, specials, nfc):
    tok = tokenizers.Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC() if nfc else None
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=700, min_frequency=1, special_tokens=specials, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    # as in Llama 3's and Qwen's files, the special tokens are added tokens after the
    # vocabulary (Llama 3: 128000 on), not in model.vocab
    data = json.loads(tok.to_str())
    vocab = {t: i - len(specials) for t, i in data["model"]["vocab"].items() if t not in specials}
    assert sorted(vocab.values()) == list(range(len(vocab)))
    data["model"]["vocab"] = vocab
    for n, added in enumerate(data["added_tokens"]):
        added["id"] = len(vocab) + n
    return tokenizers.Tokenizer.from_str(json.dumps(data))


@pytest.fixture(scope="module")
def llama3_folder(tmp_path_factory):
    data = json.loads(_byte_level(LLAMA3_PATTERN, LLAMA3_SPECIALS, nfc=False).to_str())
    data["model"]["ignore_merges"] = True
    data["model"]["vocab"][WHOLE_WORD] = len(data["model"]["vocab"])   # the added tokens follow
    for added in data["added_tokens"]:
        added["id"] += 1
    tok = tokenizers.Tokenizer.from_str(json.dumps(data))
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                      pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                      special_tokens=[("<|begin_of_text|>", bos)])])
    return _save(tok, tmp_path_factory.mktemp("llama3"), tokenizer_class="PreTrainedTokenizerFast",
                 bos_token="<|begin_of_text|>", eos_token="<|eot_id|>")


def _qwen2_tokenizer():
    return _byte_level(QWEN2_PATTERN, QWEN2_SPECIALS, nfc=True)


@pytest.fixture(scope="module")
def qwen2_folder(tmp_path_factory):
    """As Qwen 2.5's folders: transformers 5 builds Qwen2Tokenizer's own pipeline."""
    return _save(_qwen2_tokenizer(), tmp_path_factory.mktemp("qwen2"), tokenizer_class="Qwen2Tokenizer",
                 bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None,
                 add_prefix_space=False, errors="replace", split_special_tokens=False,
                 additional_special_tokens=["<|im_start|>", "<|im_end|>"])


@pytest.fixture(scope="module")
def qwen2_whole_folder(tmp_path_factory):
    return _save(_qwen2_tokenizer(), tmp_path_factory.mktemp("qwen2whole"),
                 tokenizer_class="PreTrainedTokenizerFast", eos_token="<|im_end|>")


def _llama2_tokenizer(scheme):
    """Llama 2's SentencePiece BPE: <unk> <s> </s> then the 256 byte tokens, pieces with ▁.
    ``scheme``: "normalizer" (transformers 4's conversion) or a Metaspace prepend_scheme."""
    tok = tokenizers.Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="never", split=True)   # words to train on
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=900, min_frequency=1, special_tokens=LLAMA2_SPECIALS + BYTES, show_progress=False))
    if scheme == "normalizer":
        tok.pre_tokenizer = None
    else:
        tok.normalizer = None
        tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme=scheme, split=False)
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                     decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    data = json.loads(tok.to_str())     # the byte tokens are in the vocabulary, not added
    data["added_tokens"] = [a for a in data["added_tokens"] if a["content"] not in BYTES]
    return tokenizers.Tokenizer.from_str(json.dumps(data))


LLAMA2_FOLDERS = {   # name -> (scheme of tokenizer.json, tokenizer_config.json settings)
    "whole-normalizer": ("normalizer", dict(tokenizer_class="PreTrainedTokenizerFast")),
    "whole-first": ("first", dict(tokenizer_class="PreTrainedTokenizerFast")),
    "whole-always": ("always", dict(tokenizer_class="PreTrainedTokenizerFast")),
    "LlamaTokenizer": ("normalizer", dict(tokenizer_class="LlamaTokenizer", add_bos_token=True,
                                          add_eos_token=False, legacy=False, sp_model_kwargs={},
                                          use_default_system_prompt=False)),
    "LlamaTokenizer-legacy": ("normalizer", dict(tokenizer_class="LlamaTokenizer", legacy=True)),
    # add_eos_token: dropped by transformers 5 where there is a tokenizer.json
    "LlamaTokenizer-no-prefix": ("first", dict(tokenizer_class="LlamaTokenizerFast",
                                               add_prefix_space=False, add_eos_token=True)),
}


@pytest.fixture(scope="module")
def llama2_folders(tmp_path_factory):
    return {name: _save(_llama2_tokenizer(scheme), tmp_path_factory.mktemp("llama2"), bos_token="<s>",
                        eos_token="</s>", unk_token="<unk>", **config)
            for name, (scheme, config) in LLAMA2_FOLDERS.items()}


@pytest.fixture(scope="module")
def llama2_folder(llama2_folders):
    return llama2_folders["LlamaTokenizer"]


def _pair(folder):
    return read_tokenizer_folder(folder), transformers.AutoTokenizer.from_pretrained(str(folder))


def _agree(ours, theirs, text):
    for special in (True, False):
        expected = theirs.encode(text, add_special_tokens=special)
        got = ours.encode(text, add_special_tokens=special)
        assert got == expected, (text, special, theirs.convert_ids_to_tokens(expected),
                                 [ours.id_to_token(i) for i in got])
    for skip in (True, False):
        assert ours.decode(expected, skip_special_tokens=skip) == theirs.backend_tokenizer.decode(
            expected, skip_special_tokens=skip), (text, skip)
    encoding = theirs.backend_tokenizer.encode(text, add_special_tokens=False)
    ids, offsets = ours.encode_with_offsets(text)
    assert ids == encoding.ids
    if unicodedata.normalize("NFC", text) == text or not getattr(ours, "nfc", False):
        assert offsets == encoding.offsets, (text, list(zip(encoding.tokens, encoding.offsets, offsets)))


FAMILIES = ["llama3", "qwen2", "qwen2-whole", *(f"llama2-{name}" for name in sorted(LLAMA2_FOLDERS))]


@pytest.fixture(scope="module", params=FAMILIES)
def pair(request, llama3_folder, qwen2_folder, qwen2_whole_folder, llama2_folders):
    folders = {"llama3": llama3_folder, "qwen2": qwen2_folder, "qwen2-whole": qwen2_whole_folder,
               **{f"llama2-{name}": folder for name, folder in llama2_folders.items()}}
    return _pair(folders[request.param])


def test_each_family_reads_to_its_tokenizer(llama3_folder, qwen2_folder, llama2_folder):
    llama3, qwen2, llama2 = (read_tokenizer_folder(f) for f in (llama3_folder, qwen2_folder, llama2_folder))
    assert isinstance(llama3, GPT2Tokenizer) and llama3.ignore_merges and not llama3.nfc
    assert llama3.pattern == LLAMA3_PATTERN and llama3.prefix == (llama3.bos_id,)
    assert "<|begin_of_text|>" not in llama3.vocab and llama3.bos_id == len(llama3.vocab)  # added after
    assert isinstance(qwen2, GPT2Tokenizer) and qwen2.nfc and qwen2.prefix == () and qwen2.bos_id is None
    assert isinstance(llama2, SentencePieceBPETokenizer) and llama2.unk_id == 0
    assert llama2._by_word                  # trained on words: BPE word by word (see the last test)
    with pytest.raises(ValueError, match=r"holds a SentencePieceBPETokenizer .*not a GPT2Tokenizer"):
        read_tokenizer_folder(llama2_folder, expect=GPT2Tokenizer)


def test_ids_and_text_agree_on_fixed_texts(pair):
    ours, theirs = pair
    for text in TEXTS:
        _agree(ours, theirs, text)


def test_ignore_merges_takes_a_pre_token_whole(llama3_folder):
    """Llama 3's BPE ignores the merges for a pre-token its vocabulary holds (the word added
    to the vocabulary without merges): one id, where the merges would give several."""
    ours, theirs = _pair(llama3_folder)
    ids = ours.encode(" zyzzyva", add_special_tokens=False)
    assert ids == theirs.encode(" zyzzyva", add_special_tokens=False) == [ours.vocab[WHOLE_WORD]]
    assert len(GPT2Tokenizer(ours.vocab, list(ours.ranks), pattern=ours.pattern)
               .encode(" zyzzyva")) > 1


def test_byte_fallback_reaches_bytes(llama2_folder):
    ours = read_tokenizer_folder(llama2_folder)
    ids = ours.encode("😀", add_special_tokens=False)
    assert [ours.id_to_token(i) for i in ids][-4:] == ["<0xF0>", "<0x9F>", "<0x98>", "<0x80>"]
    assert ours.decode(ids) == "😀" and ours.decode([ours.vocab["<0xF0>"]]) == "\ufffd"


_specials = st.sampled_from(LLAMA3_SPECIALS + QWEN2_SPECIALS + LLAMA2_SPECIALS)
_mixed = st.lists(st.one_of(_combined, _texts, _specials, st.sampled_from([" ", "  ", "\n", "12345"])),
                  max_size=5).map("".join)


@settings(max_examples=60, deadline=None)
@given(text=_mixed)
def test_ids_and_text_agree_on_drawn_text(pair, text):
    """Characters of every Unicode category (those whose category Unicode 3.2 already had,
    so every library's tables class them alike, as in test_hf_tokenizers), whitespace,
    digits and the special tokens, mixed."""
    _agree(*pair, text)


# -- refused by name ---------------------------------------------------------------------------

def _edit_json(path, change):
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")


WHOLE_REFUSALS = {   # a change to a Llama 3 / Llama 2 tokenizer.json -> the message naming it
    "llama3: split behaviour": ("llama3", lambda j: j["pre_tokenizer"]["pretokenizers"][0].update(
        behavior="MergedWithPrevious"), r"tokenizer.json: pre_tokenizer.pretokenizers\[0\] .* is not "
        r"read by minillm \(it reads a Split on a Regex pattern, behavior Isolated"),
    "llama3: prefix space": ("llama3", lambda j: j["pre_tokenizer"]["pretokenizers"][1].update(
        add_prefix_space=True), r"pretokenizers\[1\] .* \(it reads ByteLevel with use_regex false "
        r"and add_prefix_space false"),
    "llama3: decoder": ("llama3", lambda j: j.update(decoder={"type": "WordPiece"}),
                        r"tokenizer.json: decoder \{'type': 'WordPiece'\} is not read"),
    "llama2: normalizer": ("llama2", lambda j: j["normalizer"]["normalizers"].append({"type": "NFKC"}),
                           r"tokenizer.json: normalizer .* is not read by minillm \(it reads none, "
                           r"or the Sequence Prepend"),
    "llama2: split": ("llama2m", lambda j: j["pre_tokenizer"].update(split=True),
                      r"tokenizer.json: pre_tokenizer .* \(it reads Metaspace with replacement '▁' "
                      r"and split false"),
    "llama2: decoder": ("llama2", lambda j: j["decoder"]["decoders"].pop(1),
                        r"tokenizer.json: decoder .* \(it reads the Sequence Replace"),
    "llama2: a byte missing": ("llama2", lambda j: j["model"]["vocab"].pop("<0x41>"),
                               r"byte fallback needs the 256 byte tokens .* first '<0x41>'"),
    "llama2: dropout": ("llama2", lambda j: j["model"].update(dropout=0.1),
                        r"tokenizer.json: expected model.dropout None"),
}


@pytest.mark.parametrize("case", sorted(WHOLE_REFUSALS))
def test_refused_by_name(llama3_folder, tmp_path, case):
    family, change, message = WHOLE_REFUSALS[case]
    if family == "llama3":
        tok = tokenizers.Tokenizer.from_file(str(llama3_folder / "tokenizer.json"))
    else:
        tok = _llama2_tokenizer("normalizer" if family == "llama2" else "first")
    folder = _save(tok, tmp_path, tokenizer_class="PreTrainedTokenizerFast")
    read_tokenizer_folder(folder)                       # read before the change
    _edit_json(folder / "tokenizer.json", change)
    with pytest.raises(ValueError, match=message):
        read_tokenizer_folder(folder)


def test_class_folders_refused_by_name(tmp_path):
    folder = _save(_qwen2_tokenizer(), tmp_path / "q", tokenizer_class="Qwen2Tokenizer", add_prefix_space=True)
    with pytest.raises(ValueError, match=r"tokenizer_config.json: add_prefix_space true with "
                                         r"Qwen2Tokenizer .* is not read"):
        read_tokenizer_folder(folder)
    folder = _save(_llama2_tokenizer("first"), tmp_path / "l", tokenizer_class="LlamaTokenizer")
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ValueError, match=r"makes it a 'LlamaTokenizer', whose vocabulary minillm reads "
                                         r"from tokenizer.json.*tokenizer.model is not read"):
        read_tokenizer_folder(folder)


def test_class_decided_as_transformers_decides(llama3_folder, tmp_path):
    """A Llama 3 folder that says LlamaTokenizer is read whole; a qwen2 model's folder is a
    Qwen2Tokenizer whatever its tokenizer_config.json says; a folder naming no class takes
    its model's (llama: read whole, qwen2 and qwen3: Qwen2Tokenizer)."""
    cases = [("llama3-says-llama", llama3_folder, dict(tokenizer_class="LlamaTokenizerFast"), None),
             ("qwen2-says-fast", None, dict(tokenizer_class="PreTrainedTokenizerFast"), "qwen2"),
             ("llama-no-class", llama3_folder, dict(tokenizer_class=None), "llama"),
             ("qwen3-no-class", None, dict(tokenizer_class=None), "qwen3")]
    for name, source, config, model_type in cases:
        tok = (tokenizers.Tokenizer.from_file(str(source / "tokenizer.json")) if source is not None
               else _qwen2_tokenizer())
        folder = _save(tok, tmp_path / name, bos_token=None, **config)
        if model_type is not None:
            (folder / "config.json").write_text(json.dumps({"model_type": model_type}), encoding="utf-8")
        ours, theirs = _pair(folder)
        assert isinstance(ours, GPT2Tokenizer), name
        assert ours.nfc == (model_type in ("qwen2", "qwen3")), name
        for text in TEXTS:
            _agree(ours, theirs, text)


def test_merges_across_words_are_applied_on_the_whole_text(tmp_path):
    """A vocabulary with a merge across the start of a word (``a`` + ``▁b``): minillm then runs
    BPE on the whole text, as tokenizers does (otherwise word by word, which gives the same
    tokens when no merge crosses a word's start)."""
    vocab = {t: i for i, t in enumerate(LLAMA2_SPECIALS + BYTES + ["▁", "a", "b", "▁a", "▁b", "a▁b", "▁a▁b"])}
    merges = [("▁", "b"), ("▁", "a"), ("a", "▁b"), ("▁a", "▁b")]
    tok = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first", split=False)
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                     decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens(LLAMA2_SPECIALS)
    ours, theirs = _pair(_save(tok, tmp_path, tokenizer_class="PreTrainedTokenizerFast"))
    assert not ours._by_word
    for text in ["a b", "a a b", "b a b a", "ab b", " a  b", "a b\u00e9"]:
        _agree(ours, theirs, text)
    assert [ours.id_to_token(i) for i in ours.encode("a b a")] == ["▁a▁b", "▁a"]
