r"""The tokenizers of pretrained Hugging Face models, read offline from their folders.

- :class:`GPT2Tokenizer` (:mod:`.gpt2`): GPT-2's byte-level BPE (Radford et al. 2019,
  section 2.2) from ``vocab.json`` + ``merges.txt`` or ``tokenizer.json``.
- :class:`WordPieceTokenizer` (:mod:`.wordpiece`): BERT's basic tokenizer (clean-up, CJK
  splitting, lowercasing, accent stripping, punctuation splitting) followed by greedy
  longest-match-first WordPiece (Devlin et al. 2019, section 3; Wu et al. 2016) from
  ``vocab.txt`` or ``tokenizer.json``.
- :func:`read_tokenizer_folder` (:mod:`.folder`): a folder in any layout transformers 4 and
  5 write, with every setting that changes the ids read or refused by name; the files
  themselves in :mod:`.files`, the added tokens in :mod:`.added`.

Ids. These tokenizers keep the ids of the files they read, because a pretrained model's
embedding rows are indexed by them: they do NOT use minillm's special ids 0..6
(``minillm.data.vocab``). So they mirror :class:`~minillm.data.Tokenizer`'s interface
(``encode``, ``decode``, ``vocab_size``, ``id_to_token``, and the special ids as
properties, ``None`` where the model has no such token) without subclassing it, and
they are not trainable or saved as minillm JSON: the vocabulary files are their format.

Added and special tokens written in the text (``<|endoftext|>``, ``[MASK]``) become their
ids, as ``transformers`` does.

Which ``transformers``. Its default tokenizers (``GPT2Tokenizer``, ``BertTokenizer``,
``AutoTokenizer`` in transformers 5) are the Rust ``tokenizers`` library's, so these follow
it rule for rule: GPT-2's pattern with Unicode ``\p{L}``, ``\p{N}`` and ``\s`` (the
``regex`` package, extra ``minillm[hf]``); BERT's normalizer strips accents on the whole
text and then lowercases one character at a time, so no Greek final sigma. ``transformers``'
Python ``BertTokenizerLegacy`` (Google's original rules) lowercases each word with
``str.lower``, which writes the final sigma (``"ΟΔΟΣ"`` -> ``"οδος"``, here ``"οδοσ"``).

Unicode tables. What is left are the tables: ``tokenizers`` classes BERT's characters
(punctuation, marks, controls) with Unicode 8.0 tables and GPT-2's with Oniguruma's; minillm
reads Python's ``unicodedata`` for BERT and the ``regex`` package's tables for GPT-2. So
characters added or recategorised in later Unicode versions can tokenize differently;
``scripts/scan_tokenizer_unicode.py`` counts them and docs/pretrained.md states the count.
"""
from __future__ import annotations

from .folder import read_tokenizer_folder
from .gpt2 import GPT2_PATTERN, QWEN2_PATTERN, GPT2Tokenizer, _pretokenizer_pattern, bytes_to_unicode
from .sentencepiece import SentencePieceBPETokenizer
from .wordpiece import WordPieceTokenizer

__all__ = ["GPT2Tokenizer", "SentencePieceBPETokenizer", "WordPieceTokenizer", "read_tokenizer_folder", "bytes_to_unicode",
           "GPT2_PATTERN", "QWEN2_PATTERN"]
