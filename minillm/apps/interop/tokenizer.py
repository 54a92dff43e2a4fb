"""The tokenizer of a Hugging Face folder (:func:`load_hf_tokenizer`)."""
from __future__ import annotations

from pathlib import Path

from . import sentence_transformers


def load_hf_tokenizer(folder):
    """The tokenizer of a Hugging Face folder, in any layout transformers 4 or 5 writes
    (:func:`~minillm.data.hf_tokenizers.read_tokenizer_folder`): a
    :class:`~minillm.data.GPT2Tokenizer` or a :class:`~minillm.data.WordPieceTokenizer`.
    In a sentence-transformers folder, that of its Transformer module, lower-casing the
    text first when its ``do_lower_case`` says so."""
    from ...data.hf_tokenizers import GPT2Tokenizer, WordPieceTokenizer, read_tokenizer_folder

    body, sentence = sentence_transformers.read_settings(Path(folder))
    tok = read_tokenizer_folder(body)
    if sentence is not None and sentence.lowercase:
        if isinstance(tok, GPT2Tokenizer):
            raise ValueError(f"{body / 'sentence_bert_config.json'}: do_lower_case is true, but "
                             "minillm's GPT-2 tokenizer does not lower-case")
        # the text is lower-cased; accents are stripped only if they were
        tok = WordPieceTokenizer(tok.tokens, lowercase=True, strip_accents=tok.strip_accents,
                                 handle_chinese_chars=tok.handle_chinese_chars,
                                 max_chars_per_word=tok.max_chars_per_word,
                                 added_tokens=tok.added_tokens, prefix=tok.prefix, suffix=tok.suffix)
    return tok
