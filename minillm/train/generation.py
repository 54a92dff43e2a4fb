"""Text generation from a GPT in either backend (chapter section 6.1), one prompt or many.

The model gives the logits of the last position; :func:`minillm.train.sampling.sample_next`
chooses the token from them as NumPy, so one seed gives the same tokens in both
backends. With ``use_cache=True`` each step feeds only the new token and reuses the
keys and values of the earlier ones (the KV cache): the same tokens, far less work.
While the sequence is longer than ``block_size`` the window slides, the positions of
every kept token change, and the cache is rebuilt from the window (as without it).

Dimension legend: B rows (prompts) decoded together, P positions held in the cache,
T tokens fed in one call, V vocabulary.

Many prompts are decoded together by :class:`DecodeBatch`: rows of different lengths
are padded on the left, an attention mask (B, P) hides the padding and gives each token
its position in its own row (``GPT.forward_cached(idx, cache, attention_mask)``), and
every step feeds one token per row through one forward call over the batched KV cache.
Each row has its own ``numpy.random.Generator`` and sampling options, so a row's tokens
are those it gets alone (rows with the same options are sampled in one
:func:`~minillm.train.sampling.sample_next` call, each drawing from its own generator). Rows join (:meth:`DecodeBatch.add`, prefilled at the next step
and merged into the cache) and leave (at their end token, their token budget or
:meth:`DecodeBatch.remove`) between steps: the cache's rows are taken, left-padded and
concatenated with ``KVCache.take``, ``KVCache.left_pad`` and ``KVCache.cat``.
:func:`generate` is that loop run to the end; :func:`generate_stream` yields one prompt's
tokens as they come, and :class:`TextStream` their text (:func:`text_deltas`: decoded
incrementally, never half a UTF-8 character), which ``minillm generate`` prints as it goes
and the server streams (:class:`TextDeltas`, the same one token at a time).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..data.chat_template import apply_chat_template
from ..store.runs import load_run
from ..store.runtime import Runtime
from .sampling import _check_options, sample_next

__all__ = ["generate", "generate_stream", "generate_text", "TextStream", "TextDeltas", "text_deltas", "DecodeBatch"]


def _check_prompt(prompt_ids, vocab_size: int, name: str = "prompt_ids") -> np.ndarray:
    ids = np.asarray(prompt_ids)
    if ids.ndim != 1 or ids.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of token ids, got shape {ids.shape}")
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{name} must be integer token ids, got dtype {ids.dtype}")
    if ids.min() < 0 or ids.max() >= vocab_size:
        raise ValueError(f"{name} must be in [0, {vocab_size}), got values in [{ids.min()}, {ids.max()}]")
    return ids.astype(np.int64)


def _check_max_new_tokens(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0, got {n!r}")
    return int(n)


def _left_padded(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray | None]:
    """Rows of token ids padded on the left with id 0 to the longest, and the mask, True
    at real tokens (None when no row is padded). Shapes: -> (B, T) int64, (B, T) bool."""
    T = max(len(r) for r in rows)
    ids = np.zeros((len(rows), T), dtype=np.int64)                          # (B, T)
    mask = np.zeros((len(rows), T), dtype=bool)                             # (B, T)
    for b, r in enumerate(rows):
        ids[b, T - len(r):] = r
        mask[b, T - len(r):] = True
    return ids, None if mask.all() else mask


@dataclass
class _Row:
    """One prompt being continued: its tokens so far and how to choose the next."""
    ids: list[int]                      # prompt, then every new token
    max_new_tokens: int
    options: dict                       # temperature, top_k, top_p
    rng: np.random.Generator
    eos_id: int | None
    new: list[int] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return len(self.new) >= self.max_new_tokens or (
            self.eos_id is not None and bool(self.new) and self.new[-1] == self.eos_id)


class DecodeBatch:
    """Rows decoded together, one token per row per :meth:`step`, over one batched KV cache.

    A row is added with its prompt, token budget, sampling options, seed and end token
    (:meth:`add` returns its key); :meth:`step` gives each unfinished row its next token
    (a dict key -> token) and lets finished rows leave; :meth:`remove` drops a row at
    once (a client that went away; also call it on a finished row to forget it, as
    ``rows`` keeps finished rows for their results). Rows may join and leave between any
    two steps: a joining row is prefilled at the next step and its cache merged into the
    batch's. Not thread-safe: one thread calls add, remove and step in turn. The model
    should be in eval mode (:func:`generate` sees to it).

    Rows in the cache are left-padded to the longest; ``self._mask`` (B, P), True at
    real tokens, hides the padding. A row longer than ``block_size`` leaves the cache and
    runs its last ``block_size`` tokens through the model at each step, as one prompt
    does alone; with ``use_cache=False`` every row does that from its whole sequence.
    """

    def __init__(self, runtime, model, use_cache: bool = True):
        self.runtime, self.model, self.use_cache = runtime, model, bool(use_cache)
        self.rows: dict[int, _Row] = {}
        self._next_key = 0
        self._cached: list[int] = []        # keys of the rows in the cache, in its row order
        self._cache = None                  # tuple of one KVCache per layer, (B, H_kv, P, D) each
        self._mask = None                   # (B, P) bool, True at real tokens

    def add(self, prompt_ids, max_new_tokens: int, *, temperature: float = 1.0,
            top_k: int | None = None, top_p: float | None = None, seed: int | None = 0,
            eos_id: int | None = None) -> int:
        """A new row; returns its key. Options as :func:`generate`'s, for this row only."""
        ids = _check_prompt(prompt_ids, self.model.config.vocab_size)
        t, k, p = _check_options(temperature, top_k, top_p)
        V = self.model.config.vocab_size
        if eos_id is not None and (isinstance(eos_id, bool) or not isinstance(eos_id, (int, np.integer))
                                   or not 0 <= eos_id < V):
            raise ValueError(f"eos_id must be a token id in [0, {V}) or None, got {eos_id!r}")
        key = self._next_key
        self._next_key += 1
        self.rows[key] = _Row(ids.tolist(), _check_max_new_tokens(max_new_tokens),
                              dict(temperature=t, top_k=k, top_p=p), np.random.default_rng(seed),
                              None if eos_id is None else int(eos_id))
        return key

    def remove(self, key: int) -> list[int]:
        """Drops a row, finished or not; returns its new tokens."""
        row = self.rows.pop(key)
        if key in self._cached:
            self._keep_in_cache([k for k in self._cached if k != key])
        return row.new

    @property
    def active(self) -> list[int]:
        """Keys of the rows that will get a token at the next step."""
        return [key for key, row in self.rows.items() if not row.done]

    def step(self) -> dict[int, int]:
        """One token for each unfinished row (key -> token); a row finishes after its end
        token or its ``max_new_tokens``-th token and leaves the cache."""
        block_size = self.model.config.block_size
        active = self.active
        full = [k for k in active if not self.use_cache or len(self.rows[k].ids) > block_size]
        decode = list(self._cached)                        # rows leave the cache when they finish
        prefill = [k for k in active if k not in full and k not in self._cached]
        logits: dict[int, np.ndarray] = {}
        with self.runtime.no_grad(), self.runtime.threads():
            if decode:
                logits.update(self._decode(decode))
            if prefill:
                logits.update(self._prefill(prefill))
            if full:
                logits.update(self._full(full))
        groups: dict[tuple, list[int]] = {}                 # rows with the same options: one call
        for key in active:
            groups.setdefault(tuple(self.rows[key].options.values()), []).append(key)
        drawn = {}
        for keys in groups.values():
            rows = [self.rows[k] for k in keys]             # each row draws from its own generator
            drawn.update(zip(keys, sample_next(np.stack([logits[k] for k in keys]), rng=[r.rng for r in rows],
                                               **rows[0].options).tolist()))
        tokens = {}
        for key in active:                                  # the order of the rows: deterministic
            row = self.rows[key]
            row.ids.append(drawn[key])
            row.new.append(drawn[key])
            tokens[key] = drawn[key]
        # finished rows and rows that outgrew the block leave the cache
        self._keep_in_cache([k for k in self._cached
                             if not self.rows[k].done and len(self.rows[k].ids) <= block_size])
        return tokens

    # -- the three kinds of forward call ---------------------------------------------------
    def _last_logits(self, logits, keys) -> dict[int, np.ndarray]:
        last = self.runtime.to_numpy(logits[:, -1, :]).astype(np.float64)   # (B, V)
        return dict(zip(keys, last))

    def _decode(self, keys) -> dict[int, np.ndarray]:
        """The cached rows (all of them, in cache order) each feed their last token."""
        rt = self.runtime
        idx = np.asarray([[self.rows[k].ids[-1]] for k in keys])             # (B, 1)
        mask = np.concatenate([self._mask, np.ones((len(keys), 1), bool)], axis=1)  # (B, P+1)
        logits, self._cache = self.model.forward_cached(
            rt.tensor(idx), self._cache, None if mask.all() else rt.tensor(mask))   # (B, 1, V)
        self._mask = mask
        return self._last_logits(logits, keys)

    def _prefill(self, keys) -> dict[int, np.ndarray]:
        """New rows: their prompts, left-padded, in one call; their cache joins the batch's."""
        rt = self.runtime
        idx, mask = _left_padded([self.rows[k].ids for k in keys])          # (B, T), (B, T) or None
        logits, cache = self.model.forward_cached(rt.tensor(idx), None,
                                                  None if mask is None else rt.tensor(mask))
        self._join(keys, cache, np.ones(idx.shape, bool) if mask is None else mask)
        return self._last_logits(logits, keys)

    def _full(self, keys) -> dict[int, np.ndarray]:
        """Rows without a cache: each row's last ``block_size`` tokens through the model."""
        rt = self.runtime
        block_size = self.model.config.block_size
        idx, mask = _left_padded([self.rows[k].ids[-block_size:] for k in keys])  # (B, T)
        logits, _ = self.model.forward_cached(rt.tensor(idx), None, None if mask is None else rt.tensor(mask))
        return self._last_logits(logits, keys)

    # -- rows joining and leaving the cache ------------------------------------------------
    def _join(self, keys, cache, mask):
        """Appends rows to the cache, both sides left-padded to the longer."""
        if self._cache is None:
            self._cached, self._cache, self._mask = list(keys), cache, mask
            return
        P = max(self._mask.shape[1], mask.shape[1])
        self._cache = tuple(type(a).cat([a.left_pad(P), b.left_pad(P)]) for a, b in zip(self._cache, cache))
        self._mask = np.concatenate([_pad_mask(self._mask, P), _pad_mask(mask, P)])  # (B, P)
        self._cached = self._cached + list(keys)

    def _keep_in_cache(self, keys):
        """Keeps these rows of the cache (dropping the others), and drops the columns that
        are padding in every kept row, so the cache is as long as its longest row."""
        if keys == self._cached:
            return
        if not keys:
            self._cached, self._cache, self._mask = [], None, None
            return
        rows = [self._cached.index(k) for k in keys]
        mask = self._mask[rows]                                              # (B', P)
        start = int(np.argmax(mask.any(axis=0)))                             # first column in use
        self._cache = tuple(kv.take(rows, start) for kv in self._cache)
        self._mask, self._cached = mask[:, start:], list(keys)


def _pad_mask(mask, P):
    """A mask (B, L) with P - L False columns before it: (B, P)."""
    return np.concatenate([np.zeros((mask.shape[0], P - mask.shape[1]), bool), mask], axis=1)


def _is_batch(prompts) -> bool:
    """A batch is a 2-D array or a sequence of sequences; one prompt is a 1-D sequence."""
    if isinstance(prompts, np.ndarray):
        return prompts.ndim == 2
    return isinstance(prompts, (list, tuple)) and len(prompts) > 0 and all(
        isinstance(p, (list, tuple, np.ndarray)) for p in prompts)


def generate(runtime, model, prompt_ids, max_new_tokens: int, *, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, seed=0,
             eos_id: int | None = None, use_cache: bool = True):
    """Continue ``prompt_ids`` by up to ``max_new_tokens`` tokens; returns the new ids.

    ``prompt_ids`` is one prompt (a 1-D sequence of ids; returns ``list[int]``) or a
    batch: a list of such sequences, of any lengths, or a 2-D array (returns
    ``list[list[int]]``, each row's new ids, ragged where rows stopped early). A batch
    is decoded together (:class:`DecodeBatch`), each row's tokens being those it gets
    alone with the same arguments.

    ``temperature=0`` is greedy. A row stops early after ``eos_id`` (which is included
    in its result) and gets no more tokens. ``seed`` seeds a ``numpy.random.Generator``
    per row: an int or None is every row's seed, so each row equals its own run with that
    seed; a list gives one seed per row (different draws for equal prompts). The same
    seed gives the same tokens in both backends and with or without the cache.
    """
    batch = _is_batch(prompt_ids)
    prompts = list(prompt_ids) if batch else [prompt_ids]
    if isinstance(seed, (list, tuple, np.ndarray)):
        if not batch or len(seed) != len(prompts):
            raise ValueError(f"a list of seeds needs a batch of as many prompts: got {len(seed)} seeds "
                             f"for {len(prompts) if batch else 'one'} prompt(s)")
        seeds = list(seed)
    else:
        seeds = [seed] * len(prompts)
    max_new_tokens = _check_max_new_tokens(max_new_tokens)
    decoder = DecodeBatch(runtime, model, use_cache)
    keys = []
    for i, (prompt, row_seed) in enumerate(zip(prompts, seeds)):
        try:
            keys.append(decoder.add(prompt, max_new_tokens, temperature=temperature, top_k=top_k,
                                    top_p=top_p, seed=row_seed, eos_id=eos_id))
        except ValueError as exc:
            if not batch:
                raise
            raise ValueError(f"prompt {i} of the batch: {exc}") from None
    was_training = model.training
    model.eval()
    try:
        while decoder.active:
            decoder.step()
    finally:
        model.train(was_training)
    new = [decoder.rows[k].new for k in keys]
    return new if batch else new[0]


def generate_stream(runtime, model, prompt_ids, max_new_tokens: int, *, temperature: float = 1.0,
                    top_k: int | None = None, top_p: float | None = None, seed: int | None = 0,
                    eos_id: int | None = None, use_cache: bool = True):
    """:func:`generate` for one prompt, yielding each new token id as it is chosen (the
    same tokens, in the same order); stopping the iteration early stops the decoding."""
    decoder = DecodeBatch(runtime, model, use_cache)
    key = decoder.add(prompt_ids, _check_max_new_tokens(max_new_tokens), temperature=temperature,
                      top_k=top_k, top_p=top_p, seed=seed, eos_id=eos_id)
    was_training = model.training
    model.eval()
    try:
        while decoder.active:
            yield decoder.step()[key]
    finally:
        model.train(was_training)


class TextDeltas:
    """The text of token ids that come one at a time, piece by piece: :meth:`push` takes
    the next id and returns what it adds to the decoded text (``""`` while it is held), and
    :meth:`end` what is left once no more come. A multi-byte character split over several
    byte-level BPE tokens decodes to U+FFFD until its last byte comes: nothing is given
    until then, so no broken character is shown. ``decode(ids) -> str``; the ids are
    decoded from an anchor that moves forward every ``window`` tokens (one token of overlap
    keeps the spacing of the word tokenizer), so each push decodes at most ``window + 1`` ids.
    The pieces joined are the text :func:`text_deltas` gives (it is this, over an iterable)."""

    def __init__(self, decode, *, window: int = 64):
        self.decode, self.window = decode, window
        self.ids: list[int] = []
        self._anchor, self._shown = 0, ""   # shown: decode(ids[anchor:]) as far as already given
        self._text = ""

    def push(self, token) -> str:
        ids = self.ids
        ids.append(int(token))
        text = self._text = self.decode(ids[self._anchor:])
        if text.endswith("\ufffd"):
            return ""
        shown = self._shown
        piece = text[len(shown):] if text.startswith(shown) and len(text) > len(shown) else ""
        self._shown = text
        if len(ids) - self._anchor > self.window:
            last = self.decode(ids[-1:])
            if not last.startswith("\ufffd") and text.endswith(last):   # the last token stands alone
                self._anchor, self._shown = len(ids) - 1, last
        return piece

    def end(self) -> str:
        """What the ids left held: the stream ended inside a character, as decode gives it."""
        text, shown = self._text, self._shown
        if text.endswith("\ufffd") and text.startswith(shown) and len(text) > len(shown):
            self._shown = text
            return text[len(shown):]
        return ""


def text_deltas(tokens, decode, *, window: int = 64):
    """The text of a stream of token ids, piece by piece: each yield is what the ids so
    far add to the decoded text (:class:`TextDeltas` over an iterable; empty pieces are not
    yielded)."""
    deltas = TextDeltas(decode, window=window)
    for token in tokens:
        piece = deltas.push(token)
        if piece:
            yield piece
    last = deltas.end()
    if last:
        yield last


# the runs whose model continues text: a GPT trained on text, or on conversations (sft and
# dpo: it answers, through the chat template its tokenizer carries)
GENERATING_TASKS = ("causal_lm", "sft", "dpo")


class TextStream:
    """The continuation of ``prompt`` by a GPT (``model`` in ``runtime``, its ``tokenizer``)
    as text pieces while it is generated (iterate it); :meth:`of_run` reads a run folder.
    An empty prompt starts from ``start_id`` (a run's ``<bos>``; GPT-2's ``<|endoftext|>``).

    A prompt longer than the model's ``block_size`` tokens keeps its last ``block_size``
    tokens (the text the continuation follows; :data:`~minillm.train.spec.LONG_INPUT`);
    ``dropped`` says how many were left out (0 when none), for the caller to say so.
    ``chat_template``: the prompt is a user's turn, rendered with it and followed by the
    assistant's generation prompt (a model tuned on conversations, an ``sft`` or ``dpo``
    run); the stream is then the assistant's answer."""

    def __init__(self, runtime, model, tokenizer, prompt: str, *, start_id: int, max_new_tokens: int = 100,
                 temperature: float = 0.8, top_k: int | None = 40, top_p: float | None = None,
                 seed: int | None = 0, use_cache: bool = True, chat_template: str | None = None):
        self.tokenizer, self.block_size = tokenizer, model.config.block_size
        self.chat = chat_template is not None          # the stream is an answer, not a continuation
        ids = (apply_chat_template(tokenizer, chat_template, [{"role": "user", "content": prompt}],
                                   add_generation_prompt=True).ids if chat_template is not None
               else tokenizer.encode(prompt) or [start_id])
        self.dropped = max(0, len(ids) - self.block_size)
        self.prompt_ids = ids[self.dropped:]
        self._tokens = generate_stream(runtime, model, self.prompt_ids, max_new_tokens, temperature=temperature,
                                       top_k=top_k, top_p=top_p, seed=seed, eos_id=tokenizer.eos_id,
                                       use_cache=use_cache)

    @classmethod
    def of_run(cls, run, prompt: str, runtime: Runtime | None = None, **options) -> "TextStream":
        """The stream of the causal-LM run in ``run`` (a folder), loaded into ``runtime``
        (default ``Runtime()``), or the answer of an ``sft`` run to ``prompt`` as a user's
        turn where the run's tokenizer carries a chat template (an ``sft`` or ``dpo`` run);
        ``options`` as the constructor's."""
        loaded = load_run(run, runtime)
        if loaded.task not in GENERATING_TASKS:
            raise ValueError(f"{run}: expected a {', '.join(GENERATING_TASKS[:-1])} or {GENERATING_TASKS[-1]} run, got a {loaded.task} run "
                             f"({type(loaded.model).__name__})")
        chat = getattr(loaded.tokenizer, "chat_template", None)
        return cls(loaded.runtime, loaded.model, loaded.tokenizer, prompt, start_id=loaded.tokenizer.bos_id,
                   chat_template=chat, **options)

    def __iter__(self):
        return text_deltas(self._tokens, lambda ids: self.tokenizer.decode(ids, skip_special_tokens=True))


def generate_text(run, prompt: str, runtime: Runtime | None = None, *, max_new_tokens: int = 100,
                  temperature: float = 0.8, top_k: int | None = 40, top_p: float | None = None,
                  seed: int | None = 0, use_cache: bool = True) -> str:
    """The continuation of ``prompt`` by the causal-LM run in ``run``, all at once
    (:class:`TextStream`'s pieces joined; a prompt over ``block_size`` tokens keeps its last
    ``block_size``)."""
    return "".join(TextStream.of_run(run, prompt, runtime, max_new_tokens=max_new_tokens,
                                     temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                                     use_cache=use_cache))
