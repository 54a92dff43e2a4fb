"""The tokenizer of a Hugging Face folder (:func:`load_hf_tokenizer`)."""
from __future__ import annotations

from pathlib import Path

from . import sentence_transformers


def load_hf_tokenizer(folder):
    """The tokenizer of a Hugging Face folder: :class:`~minillm.data.GPT2Tokenizer` from
    vocab.json + merges.txt, or :class:`~minillm.data.WordPieceTokenizer` from vocab.txt or
    tokenizer.json (in a sentence-transformers folder, those of its Transformer module,
    lower-casing the text first when its ``do_lower_case`` says so)."""
    from ...data.hf_tokenizers import GPT2Tokenizer, WordPieceTokenizer

    body, sentence = sentence_transformers.read_settings(Path(folder))
    lowercase = sentence is not None and sentence.lowercase
    if (body / "vocab.json").is_file() and (body / "merges.txt").is_file():
        if lowercase:
            raise ValueError(f"{body / 'sentence_bert_config.json'}: do_lower_case is true, but "
                             "minillm's GPT-2 tokenizer does not lower-case")
        return GPT2Tokenizer.from_folder(body)
    if (body / "vocab.txt").is_file() or (body / "tokenizer.json").is_file():
        tok = WordPieceTokenizer.from_folder(body)
        if lowercase:               # the text is lower-cased; accents are stripped only if they were
            tok.lowercase = True
        return tok
    raise ValueError(f"expected a tokenizer in {body}: vocab.json + merges.txt (GPT-2) or "
                     "vocab.txt or tokenizer.json (BERT), found none of them")

