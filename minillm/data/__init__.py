"""Data preparation (chapter sections 3.1 and 5.1), backend-agnostic: NumPy arrays out.

- cleaning: :func:`clean_text`, :data:`STOPWORDS`, :func:`remove_stopwords`
- vocabulary: :class:`Vocabulary` (special tokens at ids 0..6, deterministic order)
- tokenizers: :class:`WordTokenizer` (nltk, no data), :class:`CharTokenizer`,
  :class:`BPETokenizer` (byte-level), :func:`load_tokenizer`
- pretrained models' tokenizers, with their own ids: :class:`GPT2Tokenizer` (byte-level
  BPE: GPT-2, Llama 3, Qwen 2), :class:`SentencePieceBPETokenizer` (Llama 2's, byte
  fallback), :class:`WordPieceTokenizer` (BERT's), from a Hugging Face folder of any layout
  (``hf_tokenizers.read_tokenizer_folder``); their chat templates (``chat_template``:
  ``read_chat_template``, ``apply_chat_template`` with the assistant mask)
- batching: :class:`LMBatches`, :func:`sequential_batches`, :func:`mask_tokens`,
  :func:`pad_batch`, :func:`classification_batches`, :func:`shard`
- corpora: :func:`python_docs`, :func:`synthetic_language`, :func:`sentiment`
- applications: :func:`dates_corpus` (translation), :func:`qa_corpus` and
  :func:`has_distractor` (extractive QA),
  :class:`PieceTokenizer`; :func:`instruction_set` (conversations from those tasks and the
  sentiment set, for instruction tuning) and :func:`write_jsonl`
- loaders: :func:`load_text`, :func:`load_jsonl`, :func:`load_csv`, :func:`split`,
  :func:`split_contiguous`

Nothing here downloads anything; nltk is imported only by :class:`WordTokenizer`.
"""
from .batching import (IGNORE_INDEX, LMBatches, RowBatches, classification_batches, mask_tokens, pad_batch,
                       sequential_batches, shard)
from .bpe import PRETOKENIZE_PATTERN, BPETokenizer, pretokenize
from .char_tokenizer import CharTokenizer
from .cleaning import clean_text, remove_stopwords
from .hf_tokenizers import GPT2Tokenizer, SentencePieceBPETokenizer, WordPieceTokenizer
from .corpora import (SyntheticLanguage, bag_of_words_ceiling, markov_entropy_rate, markov_stationary,
                      python_docs, sentiment, synthetic_language)
from .parallel import PieceTokenizer, dates_corpus
from .qa import has_distractor, qa_corpus
from .instructions import INSTRUCTION_TASKS, instruction_set, write_jsonl
from .loaders import LabelledTexts, Splits, load_csv, load_jsonl, load_text, split, split_contiguous
from .stopwords import NEGATIONS, STOPWORDS
from .tokenizer_base import Tokenizer
from .tokenizers import load_tokenizer
from .vocab import SPECIAL_TOKENS, Vocabulary
from .word_tokenizer import WordTokenizer, word_tokenize

__all__ = [
    "clean_text", "remove_stopwords", "STOPWORDS", "NEGATIONS",
    "Vocabulary", "SPECIAL_TOKENS",
    "Tokenizer", "WordTokenizer", "CharTokenizer", "BPETokenizer", "load_tokenizer",
    "word_tokenize", "pretokenize", "PRETOKENIZE_PATTERN", "GPT2Tokenizer", "SentencePieceBPETokenizer",
    "WordPieceTokenizer",
    "LMBatches", "RowBatches", "sequential_batches", "mask_tokens", "pad_batch", "classification_batches",
    "shard", "IGNORE_INDEX",
    "python_docs", "synthetic_language", "SyntheticLanguage", "markov_stationary",
    "markov_entropy_rate", "sentiment", "bag_of_words_ceiling",
    "dates_corpus", "qa_corpus", "has_distractor", "PieceTokenizer",
    "instruction_set", "INSTRUCTION_TASKS", "write_jsonl",
    "load_text", "load_jsonl", "load_csv", "split", "split_contiguous", "LabelledTexts", "Splits",
]
