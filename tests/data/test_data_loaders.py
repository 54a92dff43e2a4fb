"""Loaders and splits (minillm/data/loaders.py): user files, and errors that name the file
and what was expected."""
import json

import pytest
from hypothesis import given, strategies as st

from minillm.data import LabelledTexts, load_csv, load_jsonl, load_text, split, split_contiguous


def test_load_text_reads_utf8_and_drops_a_byte_order_mark(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes("\ufeffHéllo\nwörld\n".encode("utf-8"))
    assert load_text(path) == "Héllo\nwörld\n"


def test_load_text_errors_name_the_file_and_what_was_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.txt: no such file \(expected UTF-8 text\)"):
        load_text(tmp_path / "missing.txt")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("abc caf\xe9".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin\.txt: not valid UTF-8 at byte offset 7 \(byte b'\\xe9'\)"):
        load_text(latin)
    for name, content in (("empty.txt", ""), ("blank.txt", "  \n\t\n")):
        (tmp_path / name).write_text(content, encoding="utf-8")
        with pytest.raises(ValueError, match=rf"{name}: the file is empty or only whitespace; expected UTF-8 text"):
            load_text(tmp_path / name)
    with pytest.raises(ValueError, match="not a regular file"):
        load_text(tmp_path)


def test_load_jsonl(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"text": "good film", "label": "pos"}, {"text": "line\u2028sep", "label": "neg"}]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n", encoding="utf-8")
    assert load_jsonl(path) == ["good film", "line\u2028sep"]
    data = load_jsonl(path, label_field="label")
    assert isinstance(data, LabelledTexts) and data.label_names == ("neg", "pos") and data.labels == [1, 0]
    with pytest.raises(ValueError, match=r"d\.jsonl, line 1: expected an object with a 'body' field, got \['label', 'text'\]"):
        load_jsonl(path, field="body")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": oops}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.jsonl, line 2: not valid JSON"):
        load_jsonl(bad)


def test_load_csv(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('review,stars\n"great, really",5\nbad,1\n"multi\nline",3\n', encoding="utf-8")
    assert load_csv(path, text_column="review") == ["great, really", "bad", "multi\nline"]
    data = load_csv(path, text_column="review", label_column="stars")
    assert data.label_names == ("1", "3", "5") and data.labels == [2, 0, 1]
    with pytest.raises(ValueError, match=r"d\.csv: no column 'text'; the columns are \['review', 'stars'\]"):
        load_csv(path)
    with pytest.raises(ValueError, match=r"no column 'label'; the columns are"):
        load_csv(path, text_column="review", label_column="label")
    header_only = tmp_path / "h.csv"
    header_only.write_text("text,label\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"h\.csv: the CSV has a header but no rows"):
        load_csv(header_only)


@given(st.lists(st.integers(), max_size=60, unique=True), st.integers(0, 3))
def test_split_is_a_seeded_partition(items, seed):
    parts = split(items, (0.7, 0.2, 0.1), seed)
    assert sorted(parts.train + parts.validation + parts.test) == sorted(items)
    assert len(parts.validation) == round(0.2 * len(items)) and len(parts.test) == round(0.1 * len(items))
    assert split(items, (0.7, 0.2, 0.1), seed) == parts


def test_split_labelled_texts_and_contiguous_split():
    data = LabelledTexts([f"t{i}" for i in range(10)], [i % 2 for i in range(10)], ("a", "b"))
    parts = split(data, (0.6, 0.2, 0.2), seed=1)
    assert all(isinstance(p, LabelledTexts) for p in parts)
    assert all(int(t[1:]) % 2 == y for p in parts for t, y in zip(p.texts, p.labels))
    assert split_contiguous("abcdefghij", (0.8, 0.1, 0.1)) == ("abcdefgh", "i", "j")
    with pytest.raises(ValueError, match="three non-negative numbers summing to 1"):
        split([1, 2, 3], (0.5, 0.2, 0.2))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\), got 2"):
        LabelledTexts(["x"], [2], ("a", "b"))
