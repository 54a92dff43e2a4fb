"""Byte-level BPE, trained from scratch (Sennrich et al. 2016; byte-level as in GPT-2).

Ids: 0..6 the special tokens, 7..262 the 256 bytes, then one id per merge.

Training. The text is cut into pre-tokens by ``PRETOKENIZE_PATTERN`` (a run of letters,
of digits, or of other symbols, each with at most one leading space; whitespace runs
keep their last space for the next word), so merges never cross a word boundary. Each
distinct pre-token is a list of byte ids with its count. Then, repeatedly:

.. math::  (a, b)^* = \\arg\\max_{(a, b)} \\sum_{w} c(w)\\, n_{(a,b)}(w)

where c(w) is the count of pre-token w and n_{(a,b)}(w) how often b follows a in it;
every occurrence of (a, b) becomes the new token ab. Ties go to the pair whose byte
strings are smallest (then the smaller ids), so training is deterministic. Pair
counts are updated incrementally: only the pre-tokens that contain (a, b) are
rewritten, and a heap with lazy deletion finds the next best pair.

Encoding applies the merges to each pre-token in training order (lowest rank first).
Every string is a sequence of bytes, so decode(encode(s)) == s for every Unicode
string (lone surrogates, which have no UTF-8 form, are rejected).
"""
from __future__ import annotations

import heapq
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from .tokenizer_base import FORMAT_VERSION, N_SPECIAL, Tokenizer, byte_token, training_texts, utf8
from .vocab import SPECIAL_TOKENS

PRETOKENIZE_PATTERN = r" ?[^\W\d_]+| ?\d+| ?(?:[^\w\s]|_)+|\s+(?!\S)|\s+"
"""Letters | digits | other symbols (each with one optional leading space) | whitespace.
Every character matches one branch, so the pre-tokens concatenate back to the text."""

N_BASE = N_SPECIAL + 256          # specials + bytes: the smallest possible vocabulary
_CACHE_LIMIT = 1 << 16            # the word -> ids memo is cleared when it grows past this


def pretokenize(text: str, pattern: re.Pattern[str] | None = None) -> list[str]:
    """Split ``text`` into pre-tokens; ``"".join(pretokenize(t)) == t`` for every t."""
    return (pattern or _PATTERN).findall(text)


_PATTERN = re.compile(PRETOKENIZE_PATTERN)


def _merge_word(symbols: list[int], a: int, b: int, new: int) -> list[int]:
    """Replace each (a, b), left to right, by ``new``."""
    out: list[int] = []
    i, n = 0, len(symbols)
    while i < n:
        if i + 1 < n and symbols[i] == a and symbols[i + 1] == b:
            out.append(new)
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return out


class BPETokenizer(Tokenizer):
    """Byte-level BPE: ``merges[r] = (a, b, c)`` means rank r joins ids a, b into id c."""

    kind = "BPETokenizer"

    def __init__(self, merges: list[tuple[int, int, int]], pattern: str = PRETOKENIZE_PATTERN):
        self.pattern = pattern
        self._pattern = re.compile(pattern)
        self._id_bytes = [tok.encode() for tok in SPECIAL_TOKENS] + [bytes([b]) for b in range(256)]
        self.merges: list[tuple[int, int, int]] = []
        self._rank: dict[tuple[int, int], tuple[int, int]] = {}    # (a, b) -> (rank, c)
        for a, b, c in merges:
            a, b, c = int(a), int(b), int(c)
            V = len(self._id_bytes)
            if not (N_SPECIAL <= a < V and N_SPECIAL <= b < V):
                raise ValueError(f"merge ({a}, {b}) -> {c} uses an id outside [{N_SPECIAL}, {V})")
            joined = self._id_bytes[a] + self._id_bytes[b]
            if c == V:
                self._id_bytes.append(joined)
            elif not (N_SPECIAL <= c < V and self._id_bytes[c] == joined):
                raise ValueError(f"merge ({a}, {b}) -> {c}: expected id {V} or an existing id for {joined!r}")
            self._rank[(a, b)] = (len(self.merges), c)
            self.merges.append((a, b, c))
        self._cache: dict[str, list[int]] = {}

    # --- training ---------------------------------------------------------------
    @classmethod
    def train(
        cls,
        texts_or_text: str | Iterable[str],
        *,
        vocab_size: int = 2000,
        min_frequency: int = 2,
        pattern: str = PRETOKENIZE_PATTERN,
    ) -> "BPETokenizer":
        """Learn merges until ``vocab_size`` tokens (specials and bytes included) or until
        no pair occurs ``min_frequency`` times."""
        texts = training_texts(texts_or_text, cls.kind)
        if vocab_size < N_BASE:
            raise ValueError(f"vocab_size must be >= {N_BASE} (7 special + 256 byte tokens), got {vocab_size}")
        if min_frequency < 1:
            raise ValueError(f"min_frequency must be >= 1, got {min_frequency}")
        compiled = re.compile(pattern)
        word_counts: Counter[str] = Counter()
        for text in texts:
            word_counts.update(compiled.findall(text))

        words = [[N_SPECIAL + b for b in utf8(w, cls.kind)] for w in word_counts]  # symbols per word
        freqs = list(word_counts.values())
        pieces = [tok.encode() for tok in SPECIAL_TOKENS] + [bytes([b]) for b in range(256)]
        piece_id = {p: i for i, p in enumerate(pieces) if i >= N_SPECIAL}
        pair_count: dict[tuple[int, int], int] = defaultdict(int)
        where: dict[tuple[int, int], set[int]] = defaultdict(set)     # pair -> words that may hold it
        for w, (symbols, f) in enumerate(zip(words, freqs)):
            for pair in zip(symbols, symbols[1:]):
                pair_count[pair] += f
                where[pair].add(w)

        def key(pair: tuple[int, int], count: int):
            return (-count, pieces[pair[0]], pieces[pair[1]], pair)

        heap = [key(p, c) for p, c in pair_count.items()]
        heapq.heapify(heap)
        merges: list[tuple[int, int, int]] = []
        while len(piece_id) + N_SPECIAL < vocab_size and heap:
            neg_count, _, _, pair = heapq.heappop(heap)
            if pair_count.get(pair, 0) != -neg_count:
                continue                                   # stale heap entry
            if -neg_count < min_frequency:
                break
            a, b = pair
            joined = pieces[a] + pieces[b]
            new = piece_id.get(joined)
            if new is None:
                new = len(pieces)
                pieces.append(joined)
                piece_id[joined] = new
            merges.append((a, b, new))
            delta: dict[tuple[int, int], int] = defaultdict(int)
            for w in sorted(where.pop(pair)):
                old = words[w]
                merged = _merge_word(old, a, b, new)
                if len(merged) == len(old):
                    continue                               # this word no longer holds the pair
                f = freqs[w]
                for p in zip(old, old[1:]):
                    delta[p] -= f
                for p in zip(merged, merged[1:]):
                    delta[p] += f
                    where[p].add(w)
                words[w] = merged
            for p, d in delta.items():
                if d == 0:
                    continue
                c = pair_count[p] + d
                if c > 0:
                    pair_count[p] = c
                    heapq.heappush(heap, key(p, c))
                else:
                    del pair_count[p]
        return cls(merges, pattern)

    # --- encoding ---------------------------------------------------------------
    def _encode_word(self, word: str) -> list[int]:
        ids = self._cache.get(word)
        if ids is not None:
            return ids
        symbols = [N_SPECIAL + b for b in utf8(word, self.kind)]
        rank = self._rank
        while len(symbols) > 1:
            best = min(zip(symbols, symbols[1:]), key=lambda p: rank.get(p, (len(rank), 0))[0])
            if best not in rank:
                break
            symbols = _merge_word(symbols, best[0], best[1], rank[best][1])
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[word] = symbols
        return symbols

    def _encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for word in self._pattern.findall(text):
            ids.extend(self._encode_word(word))
        return ids

    def pretokenize(self, text: str) -> list[str]:
        return pretokenize(text, self._pattern)

    def id_to_token(self, index: int) -> str:
        if N_SPECIAL <= index < N_BASE:
            return byte_token(index - N_SPECIAL)
        return super().id_to_token(index)

    # --- JSON -------------------------------------------------------------------
    def _to_dict(self) -> dict[str, Any]:
        return {
            "type": self.kind, "version": FORMAT_VERSION, "pattern": self.pattern,
            "special_tokens": list(SPECIAL_TOKENS),
            "merges": [list(m) for m in self.merges],
            # for people reading the file; load() rebuilds the tokens from the merges
            "merged_tokens": [self.id_to_token(c) for _, _, c in self.merges],
        }

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> "BPETokenizer":
        return cls([tuple(m) for m in data["merges"]], data.get("pattern", PRETOKENIZE_PATTERN))
