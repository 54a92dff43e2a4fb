"""GPT2Tokenizer and WordPieceTokenizer agree with ``transformers``' tokenizers built from
the same vocabulary files (trained here, offline, with the ``tokenizers`` library).

Agreement is exact: token ids are integers, so any difference is a bug.
"""
import json
import re
import sys
import unicodedata
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from minillm.data import GPT2Tokenizer, WordPieceTokenizer  # noqa: E402
from minillm.data.hf_tokenizers import _pretokenizer_pattern, bytes_to_unicode, read_tokenizer_folder  # noqa: E402

CORPUS = [
    "The quick brown fox jumps over the lazy dog. It's a dog's life, isn't it?",
    "Attention is all you need: softmax(QK^T / sqrt(d_k)) V.",
    "Les élèves étudient l'apprentissage profond à l'université de Montréal.",
    "Straße, Fußgänger, Grüße aus München! Naïve café résumé coöperate.",
    "机器学习 和 深度学习 是 人工智能 的 分支。日本語のテキストも。",
    "Numbers: 3.14159, 2,718, 1e-5, ½, ², Ⅻ, and 42!!! $100 #hashtag @user",
    "  leading spaces,\ttabs,\n\nnewlines   and    runs of   whitespace  ",
    "emoji 🙂👍🏽 and symbols © ® ™ — “quotes” ‘single’ «guillemets»",
    "Привет, мир! Γειά σου κόσμε. مرحبا بالعالم",
] * 3

SAMPLE = CORPUS[:9] + [
    "",
    " ",
    "unseenword zyzzyva qwxjk floccinaucinihilipilification",
    "I'll we've they're she'd you'm 'S 'T",
    "ÀÉÎÕÜ àéîõü ñ ç ø å æ œ",
    "a\u0301 e\u0300 combining accents (NFD)",
    "<|endoftext|>Hello<|endoftext|> world",
    "[CLS] a [MASK] b [SEP]",
    "tab\there\x0bvertical\x0cform\u00a0nbsp\u2003emspace\u3000ideographic",
    "control\x00chars\x07and\ufffdreplacement",
    "snake_case_name and CamelCaseName and ALLCAPS",
    "x" * 120,
    "mixed 中文English日本",
    "punctuation!!??...;;::--__((]]{{",
    "a\U0002b868b a\U0002b920b a\u4e00b",              # the edge of CJK Extension E
    "unassigned \U0003862e and private use \ue000 zero\u200bwidth soft\u00adhyphen",
]


@pytest.fixture(scope="module")
def gpt2_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpt2tok")
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS, vocab_size=600, min_frequency=1,
                            special_tokens=["<|endoftext|>"], show_progress=False)
    bpe.save_model(str(folder))
    return folder


@pytest.fixture(scope="module", params=[True, False], ids=["uncased", "cased"])
def bert_files(tmp_path_factory, request):
    folder = tmp_path_factory.mktemp("berttok")
    wp = tokenizers.BertWordPieceTokenizer(lowercase=request.param)
    wp.train_from_iterator(CORPUS, vocab_size=400, min_frequency=1, show_progress=False)
    wp.save_model(str(folder))
    return folder, request.param


def test_bytes_to_unicode_is_a_bijection_onto_printable_characters():
    table = bytes_to_unicode()
    assert sorted(table) == list(range(256)) and len(set(table.values())) == 256
    assert all(not c.isspace() and c.isprintable() for c in table.values())
    assert table[ord("A")] == "A" and table[ord(" ")] == "Ġ"      # GPT-2's well-known space


def test_gpt2_matches_transformers(gpt2_files):
    ours = read_tokenizer_folder(gpt2_files, expect=GPT2Tokenizer)
    theirs = transformers.GPT2Tokenizer.from_pretrained(str(gpt2_files))
    assert ours.vocab_size == len(theirs.get_vocab())
    assert ours.eos_id == theirs.convert_tokens_to_ids("<|endoftext|>")
    for text in SAMPLE:
        expected = theirs.encode(text, add_special_tokens=False)
        assert ours.encode(text) == expected, text
        assert ours.decode(expected) == theirs.decode(expected, clean_up_tokenization_spaces=False)
        if "<|endoftext|>" not in text:
            assert ours.decode(ours.encode(text)) == text      # byte-level BPE is lossless
    assert ours.encode("hi", add_special_tokens=False) == ours.encode("hi")  # GPT-2 adds none


def test_wordpiece_matches_transformers(bert_files):
    folder, lowercase = bert_files
    ours = WordPieceTokenizer.from_file(folder / "vocab.txt", lowercase=lowercase)
    theirs = transformers.BertTokenizer.from_pretrained(str(folder), do_lower_case=lowercase)
    assert ours.vocab_size == len(theirs.get_vocab())
    n_unk = 0
    for text in SAMPLE:
        expected = theirs.encode(text)
        got = ours.encode(text)
        assert got == expected, (text, ours.decode(got), theirs.decode(expected))
        n_unk += got.count(ours.unk_id)
        # decode is the documented join (transformers' own decode also tidies the
        # spaces before punctuation, by rules that differ between its versions)
        pieces = [t for t in theirs.convert_ids_to_tokens(expected) 
                  if t not in ("[CLS]", "[SEP]", "[PAD]", "[MASK]")]
        assert ours.decode(expected, skip_special_tokens=True) == " ".join(pieces).replace(" ##", "")
    assert n_unk > 0                                     # the sample does reach [UNK]
    assert ours.encode("a", add_special_tokens=False) == theirs.encode("a", add_special_tokens=False)


def test_wordpiece_options_from_folder(bert_files, tmp_path):
    folder, _ = bert_files
    (tmp_path / "vocab.txt").write_text((folder / "vocab.txt").read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
    tok = read_tokenizer_folder(tmp_path, expect=WordPieceTokenizer)
    assert not tok.lowercase and not tok.strip_accents
    assert tok.basic_tokenize("Héllo, World!") == ["Héllo", ",", "World", "!"]


def test_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match=r"expected a tokenizer in .*: tokenizer.json, vocab.json"):
        read_tokenizer_folder(tmp_path, expect=GPT2Tokenizer)
    (tmp_path / "vocab.json").write_text('{"a": 0}')
    (tmp_path / "merges.txt").write_text("#version: 0.2\na b c\n")
    with pytest.raises(ValueError, match=r"merges.txt, line 2: expected two tokens"):
        read_tokenizer_folder(tmp_path, expect=GPT2Tokenizer)
    with pytest.raises(ValueError, match=r"holds a GPT2Tokenizer \(vocab.json \+ merges.txt\), "
                                         r"not a WordPieceTokenizer"):
        read_tokenizer_folder(tmp_path, expect=WordPieceTokenizer)
    with pytest.raises(ValueError, match=r"expected \[UNK\] in the vocabulary"):
        WordPieceTokenizer(["a", "b"])
    with pytest.raises(ValueError, match=r"token id must be in \[0, 3\), got 7"):
        WordPieceTokenizer(["[UNK]", "a", "b"]).decode([7])


@pytest.fixture(scope="module")
def both_gpt2(gpt2_files):
    return read_tokenizer_folder(gpt2_files, expect=GPT2Tokenizer), transformers.GPT2Tokenizer.from_pretrained(str(gpt2_files))


@pytest.fixture(scope="module")
def both_bert(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bertfuzz")
    wp = tokenizers.BertWordPieceTokenizer(lowercase=True)
    wp.train_from_iterator(CORPUS, vocab_size=400, min_frequency=1, show_progress=False)
    wp.save_model(str(folder))
    return read_tokenizer_folder(folder, expect=WordPieceTokenizer), transformers.BertTokenizer.from_pretrained(str(folder))


# Text over U+0000..U+05FF (Latin, Greek, Cyrillic, Armenian, Hebrew, controls, combining
# marks; no lone surrogates: they have no UTF-8 form), with extra weight on characters the
# pre-tokenizers treat specially (CJK, emoji, wide spaces). Why the bound for BERT: its rules
# read Unicode categories, from Python's unicodedata here and from Unicode 8.0 tables in the
# ``tokenizers`` library, which differ on characters added since (none below U+0600; the
# scan below counts them). GPT-2's test draws from all of Unicode, without the characters
# Python does not know, which the ``regex`` package and Oniguruma class by their own tables.
_texts = st.text(st.one_of(st.characters(blacklist_categories=("Cs",), max_codepoint=0x05FF),
                           st.sampled_from(list(" \t\n'.,!?éÉß中ー😀\u0301\u00a0\u3000_-0123"))),
                 max_size=40)
_all_texts = st.text(st.one_of(st.characters(blacklist_categories=("Cs", "Cn")),
                               st.sampled_from(list(" \t\n'.,!?éß中😀\u0301\u00a0\u3000_-0123"))),
                     max_size=40)


@given(text=_all_texts)
def test_gpt2_matches_transformers_on_drawn_text(both_gpt2, text):
    ours, theirs = both_gpt2
    assert ours.encode(text) == theirs.encode(text, add_special_tokens=False)


@given(text=_texts)
def test_wordpiece_matches_transformers_on_drawn_text(both_bert, text):
    ours, theirs = both_bert
    assert ours.encode(text) == theirs.encode(text)


def test_wordpiece_from_tokenizer_json_alone(bert_files, tmp_path):
    """transformers 5 saves a BERT tokenizer as tokenizer.json + tokenizer_config.json, no
    vocab.txt: the vocabulary is read from tokenizer.json, and the ids agree with the
    tokenizer transformers loads from that folder."""
    folder, lowercase = bert_files
    transformers.BertTokenizer(str(folder / "vocab.txt"), do_lower_case=lowercase).save_pretrained(tmp_path)
    assert not (tmp_path / "vocab.txt").exists() and (tmp_path / "tokenizer.json").is_file()
    ours, theirs = read_tokenizer_folder(tmp_path, expect=WordPieceTokenizer), transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert ours.tokens == WordPieceTokenizer.from_file(folder / "vocab.txt").tokens
    assert ours.lowercase == lowercase
    for text in SAMPLE:
        assert ours.encode(text) == theirs.encode(text), text
    data = json.loads((tmp_path / "tokenizer.json").read_text(encoding="utf-8"))
    data["model"]["continuing_subword_prefix"] = "@@"
    (tmp_path / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match=r"tokenizer.json: expected model.continuing_subword_prefix '##'"):
        read_tokenizer_folder(tmp_path, expect=WordPieceTokenizer)
    # the misleading message of issue 28.5 is now a refusal that names both files
    data["model"] = {"type": "BPE", "vocab": {}, "merges": []}
    (tmp_path / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match=r"tokenizer_config.json's tokenizer_class makes it a "
                                         r"'BertTokenizer', but tokenizer.json's model.type is 'BPE'"):
        read_tokenizer_folder(tmp_path, expect=WordPieceTokenizer)


# -- Characters of every Unicode category, in combination ---------------------------------
#
# The oracle is ``transformers``' default tokenizer, which in transformers 5 is the Rust
# ``tokenizers`` library's (``BertTokenizer``, ``GPT2Tokenizer`` and ``AutoTokenizer`` all are).
# Drawn here: words with cased letters first, inside and last, mixed with characters of every
# general category, joined by every kind of separator. Exact agreement is asserted on the
# characters whose category has not changed since Unicode 3.2 (the stdlib's
# ``unicodedata.ucd_3_2_0``), so that every library's tables class them alike: what is left
# (characters of later Unicode versions) is the Unicode-tables difference the scan counts.

CATEGORIES = ("Cc", "Cf", "Co", "Zs", "Zl", "Zp", "Mn", "Mc", "Me", "Lu", "Ll", "Lt", "Lm", "Lo",
              "Nd", "Nl", "No", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So")
# letters whose lowercase depends on, or changes, more than the letter: final sigma, dotted I,
# sharp s, a titlecase digraph, the ohm and kelvin signs (NFD gives Omega and K)
TRICKY_CASED = "ΣσςİıßǅǈÅÉΩKﬁ"


def stable(cp: int) -> bool:
    """Assigned by Unicode 3.2 with the category it has in this Python's Unicode."""
    ch = chr(cp)
    return unicodedata.ucd_3_2_0.category(ch) == unicodedata.category(ch) != "Cn"


def _category_pools(per_category=48):
    """Up to ``per_category`` stable characters of each category, spread over it."""
    found = defaultdict(list)
    for cp in range(0x110000):
        if not 0xD800 <= cp <= 0xDFFF and stable(cp):
            found[unicodedata.category(chr(cp))].append(chr(cp))
    return {cat: found[cat][::max(1, len(found[cat]) // per_category)] for cat in CATEGORIES}


POOLS = _category_pools()
_any_char = st.sampled_from(CATEGORIES).flatmap(lambda cat: st.sampled_from(POOLS[cat]))
_cased = st.sampled_from(POOLS["Lu"] + POOLS["Ll"] + POOLS["Lt"] + list(TRICKY_CASED))
_maybe_cased = st.one_of(st.just(""), _cased)
_word = st.tuples(_maybe_cased, st.text(_any_char, max_size=3), _cased,
                  st.text(_any_char, max_size=3), _maybe_cased).map("".join)
_separator = st.sampled_from([" ", "  ", "\t", "\n", "\r\n", "\x0b", "\x1c", "\x85", "\u00a0",
                              "\u2028", "\u2029", "\u3000", "'s ", "'", "-", "1", ""])
_combined = st.lists(st.tuples(_word, _separator), max_size=6).map(
    lambda parts: "".join(w + sep for w, sep in parts))


def test_category_pools_cover_every_category():
    assert all(POOLS[cat] for cat in CATEGORIES)
    assert all(stable(ord(c)) for c in TRICKY_CASED)


@pytest.fixture(scope="module", params=[True, False], ids=["uncased", "cased"])
def both_bert_all_categories(tmp_path_factory, request):
    """WordPiece over the corpus vocabulary plus every pooled character, its lowercase and
    its NFD parts, alone and as ``##`` continuations: so drawn words reach real ids (not
    one [UNK] that would hide how they were normalized)."""
    lowercase = request.param
    folder = tmp_path_factory.mktemp("bertcats")
    wp = tokenizers.BertWordPieceTokenizer(lowercase=lowercase)
    wp.train_from_iterator(CORPUS, vocab_size=400, min_frequency=1, show_progress=False)
    wp.save_model(str(folder))
    tokens = (folder / "vocab.txt").read_text(encoding="utf-8").split("\n")
    chars = {c for pool in POOLS.values() for c in pool} | set(TRICKY_CASED)
    chars |= {p for c in chars for p in c.lower() + unicodedata.normalize("NFD", c + c.lower())}
    # no whitespace, line breaks or dropped controls: a vocab.txt line cannot hold them
    chars = {c for c in chars if not c.isspace() and len(c.splitlines()) == 1
             and unicodedata.category(c) not in ("Cc", "Cf", "Co")}
    tokens += [t for c in sorted(chars) for t in (c, "##" + c) if t not in tokens]
    (folder / "vocab.txt").write_text("\n".join(t for t in tokens if t) + "\n", encoding="utf-8")
    ours = WordPieceTokenizer.from_file(folder / "vocab.txt", lowercase=lowercase)
    theirs = transformers.BertTokenizer.from_pretrained(str(folder), do_lower_case=lowercase)
    assert ours.vocab_size == len(theirs.get_vocab())
    return ours, theirs


@given(text=_combined)
def test_gpt2_matches_transformers_on_every_category(both_gpt2, text):
    ours, theirs = both_gpt2
    assert ours.encode(text) == theirs.encode(text, add_special_tokens=False)


@given(text=_combined)
def test_wordpiece_matches_transformers_on_every_category(both_bert_all_categories, text):
    ours, theirs = both_bert_all_categories
    assert ours.encode(text) == theirs.encode(text)


def test_wordpiece_cases_each_letter_alone(both_bert_all_categories):
    """``tokenizers`` lowercases letter by letter, after stripping accents: no final sigma
    (Python's ``str.lower`` writes one), and the dotted I keeps its dot only when cased."""
    ours, theirs = both_bert_all_categories
    for text in ["ΟΔΟΣ ΟΔΟΣ.", "ΑΣ\u0301", "İstanbul", "ǅemal", "Ωmega K"]:
        assert ours.encode(text) == theirs.encode(text), text
    if ours.lowercase:
        assert ours.basic_tokenize("ΟΔΟΣ.") == ["οδοσ", "."]          # not "οδος"
        assert "ΟΔΟΣ".lower() == "οδος"                              # what str.lower gives


def test_legacy_python_bert_writes_the_final_sigma():
    """``transformers``' Python ``BertTokenizerLegacy`` (Google's original rules: each word
    ``str.lower``-ed, then NFD) differs from the default, Rust one that minillm follows."""
    legacy = pytest.importorskip("transformers.models.bert.tokenization_bert_legacy")
    assert legacy.BasicTokenizer(do_lower_case=True).tokenize("ΟΔΟΣ.") == ["οδος", "."]
    assert WordPieceTokenizer(["[UNK]"]).basic_tokenize("ΟΔΟΣ.") == ["οδοσ", "."]


def test_gpt2_whitespace_is_unicode_white_space(both_gpt2):
    """U+001C..U+001F are whitespace to the stdlib's ``re`` (and ``str.isspace``), not to
    Unicode, ``regex`` or Oniguruma: GPT-2 keeps them with the symbols."""
    ours, theirs = both_gpt2
    text = "a \x1cb \x1f1"
    assert _pretokenizer_pattern().findall(text) == ["a", " \x1c", "b", " \x1f", "1"]
    assert ours.encode(text) == theirs.encode(text, add_special_tokens=False)
    assert re.findall(r"\s+", text) == [" \x1c", " \x1f"]          # the stdlib's re: whitespace


# -- The scan that docs/pretrained.md quotes -----------------------------------------------

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import scan_tokenizer_unicode as scan  # noqa: E402

DOC = Path(__file__).resolve().parents[2] / "docs" / "pretrained.md"


def _documented():
    text = " ".join(DOC.read_text(encoding="utf-8").split())
    m = re.search(r"Unicode ([\d.]+), regex ([\d.]+), tokenizers ([\d.]+)\): GPT-2 (\d+), "
                  r"BERT cased (\d+), BERT uncased (\d+) code points", text)
    assert m, f"{DOC} should state the scan's figures in the documented form"
    versions = {"unicodedata": m[1], "regex": m[2], "tokenizers": m[3]}
    return versions, dict(zip(scan.KINDS, map(int, m.group(4, 5, 6))))


@pytest.mark.slow
@pytest.mark.parametrize("kind", scan.KINDS)
def test_scan_matches_the_documented_figure(kind):
    """Rerun the scan (every code point of planes 0..3 and 14, a sample of the unassigned and
    private-use planes): the differences are all characters of later Unicode versions than
    3.2 (tables, not rules), and their number is the one docs/pretrained.md states when the
    Unicode tables here are those it was measured with."""
    differ = scan.differing_code_points(kind, scan.code_points(quick=True))
    rules = [f"U+{c:04X}" for c in differ if stable(c)]
    assert not rules, f"{kind}: a rule differs, not only the Unicode tables: {rules[:20]}"
    measured_with, figures = _documented()
    here = {k: v for k, v in scan.versions().items() if k in measured_with}
    if here != measured_with:
        pytest.skip(f"docs/pretrained.md's figures were measured with {measured_with}, here {here}: "
                    f"rerun scripts/scan_tokenizer_unicode.py and update the doc ({kind}: {len(differ)})")
    assert len(differ) == figures[kind]
