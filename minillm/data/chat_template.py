"""Chat templates: a conversation (a list of ``{"role", "content"}`` messages) rendered to text
with the Jinja template of a Hugging Face folder, as ``transformers``' ``apply_chat_template``
renders it, then tokenized, with the mask of the assistant's tokens.

The template is Jinja (``jinja2``, extra ``minillm[hf]``) in the environment ``transformers``
gives it (``transformers/utils/chat_template_utils.py``), written here again:

- a sandbox (``ImmutableSandboxedEnvironment``): the template cannot change the lists and
  dicts it is given or reach Python's internals; a template from a downloaded folder is
  code someone else wrote;
- ``trim_blocks`` and ``lstrip_blocks``: a line holding only a ``{% ... %}`` tag leaves no
  line break and no indentation behind;
- ``{% break %}`` / ``{% continue %}`` (``jinja2.ext.loopcontrols``);
- ``raise_exception(message)``, ``strftime_now(format)`` (today's date, which Llama 3.1's
  template writes), ``tojson`` (``json.dumps``, non-ASCII kept, with ``indent``,
  ``separators``, ``sort_keys``), ``dict(...)`` and ``namespace(...)`` (no ``_`` names);
- the variables ``messages``, ``tools``, ``documents``, ``add_generation_prompt``, the
  tokenizer's special tokens (``bos_token``, ``eos_token``, ...) and any others passed;
- ``{% generation %} ... {% endgeneration %}``: marks what the assistant writes; the
  characters it renders are recorded, and a token is in the assistant mask when its
  characters overlap them (``return_assistant_tokens_mask=True``), the mask SFT puts the loss
  on (issue 26).

The text is tokenized without the post-processor's tokens (``add_special_tokens=False``):
a template writes its own ``bos_token``.

:data:`DEFAULT_CHAT_TEMPLATE` is the template of minillm's own tokenizers (char, word, BPE),
whose models have none of their own.
"""
from __future__ import annotations

import json
from contextvars import ContextVar
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

# The template of minillm's own tokenizers (they have no chat template of their own):
#
#     System: Answer briefly.
#     User: Is this review positive or negative? the plot was good.
#     Assistant:
#     positive<eos>
#
# Why this form, for a small model pretrained on plain text:
# - the roles are plain words ("User:", "Assistant:") that a BPE trained on English text
#   already has as tokens, so the model reads them with what pretraining taught it; no new
#   token ids (minillm's vocabularies have no role tokens, and a new embedding row would
#   start untrained);
# - an answer ends with the one special token <eos> (``{{ eos_token }}``, matched whole by
#   ``encode_with_offsets``), so generation stops at ``eos_id`` and the model learns one
#   stop signal, never a text one it might also write inside an answer;
# - "Assistant:" is followed by a line break, so the generation prompt ends on a token
#   boundary that training has too: a trailing space would be a token of its own at the
#   prompt's end (BPE joins a space to the next word), one the model never saw before an answer;
# - ``{% generation %}`` holds the answer and its <eos>: the loss is on what the assistant
#   writes, its stop included, and on nothing of the prompt;
# - short: three tokens around a user turn, four around an answer, so conversations fit a
#   small model's window (the demo's: 64 tokens).
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ 'Assistant:\n' }}{% generation %}{{ message['content'] + eos_token }}{% endgeneration %}{{ '\n' }}"
    "{% elif message['role'] in ('system', 'user') %}"
    "{{ message['role'] | capitalize + ': ' + message['content'] + '\n' }}"
    "{% else %}"
    "{{ raise_exception('expected a role system, user or assistant, got ' + message['role']) }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:\n' }}{% endif %}")

# the names transformers gives a message's reasoning (Qwen 3's template reads the first)
REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


def read_chat_template(folder, name: str | None = None) -> str:
    """The chat template of a Hugging Face folder, where ``transformers`` 5 finds it:
    ``chat_template.jinja`` (and ``chat_templates/NAME.jinja``), which take priority, else
    ``tokenizer_config.json``'s ``chat_template`` (a string, or a list of ``{"name",
    "template"}``). Several templates: ``name``, by default ``"default"``."""
    folder = Path(folder)
    templates = {}
    if (folder / "chat_template.jinja").is_file():
        templates["default"] = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    if (folder / "chat_templates").is_dir():
        for path in sorted((folder / "chat_templates").glob("*.jinja")):
            templates[path.stem] = path.read_text(encoding="utf-8")
    config_path = folder / "tokenizer_config.json"
    if not templates and config_path.is_file():
        found = json.loads(config_path.read_text(encoding="utf-8")).get("chat_template")
        if isinstance(found, str):
            templates["default"] = found
        elif isinstance(found, list):
            templates = {t["name"]: t["template"] for t in found}
        elif found is not None:
            raise ValueError(f"{config_path}: expected chat_template a string or a list of "
                             f"{{'name', 'template'}}, got {type(found).__name__}")
    if not templates:
        raise ValueError(f"expected a chat template in {folder} (chat_template.jinja, or "
                         "tokenizer_config.json's chat_template), found none")
    key = name or "default"
    if key not in templates:
        raise ValueError(f"{folder}: expected a chat template named {key!r}, the folder has "
                         f"{sorted(templates)}")
    return templates[key]


# -- the Jinja environment ------------------------------------------------------------------

_rendering: ContextVar = ContextVar("minillm_chat_rendering", default=None)


def _environment():
    """The sandboxed Jinja environment of ``transformers``' chat templates (module docstring)."""
    try:
        import jinja2
        from jinja2 import nodes
        from jinja2.ext import Extension, loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        raise ImportError("chat templates need the `jinja2` package: pip install 'minillm[hf]'") from None

    class Generation(Extension):
        """``{% generation %} ... {% endgeneration %}``: renders its body and records where
        its characters are in the text rendered so far."""
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.CallBlock(self.call_method("_mark"), [], [], body).set_lineno(lineno)

        def _mark(self, caller):
            text = caller()
            state = _rendering.get()
            if state is not None:                      # (blocks rendered so far, spans)
                start = sum(len(b) for b in state[0])
                state[1].append((start, start + len(text)))
            return text

    class Namespace(jinja2.utils.Namespace):
        """``namespace(...)`` without attributes that start with ``_``."""
        def __init__(*args, **kwargs):
            self, args = args[0], args[1:]
            for key in dict(*args, **kwargs):
                Namespace._check(key)
            jinja2.utils.Namespace.__init__(self, *args, **kwargs)

        def __setitem__(self, key, value):
            Namespace._check(key)
            jinja2.utils.Namespace.__setitem__(self, key, value)

        @staticmethod
        def _check(key):
            if isinstance(key, str) and key.startswith("_"):
                raise jinja2.exceptions.SecurityError(f"a chat template may not set {key!r} on a "
                                                      "namespace (names starting with _ are refused)")

    class Dict:
        """``dict(...)`` and ``dict.fromkeys(...)``, nothing else of the type."""
        def __call__(self, *args, **kwargs):
            return dict(*args, **kwargs)

        def fromkeys(self, *args, **kwargs):
            return dict.fromkeys(*args, **kwargs)

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[Generation, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals.update(raise_exception=raise_exception, dict=Dict(), namespace=Namespace,
                       strftime_now=lambda fmt: datetime.now().strftime(fmt))
    return env


@lru_cache(maxsize=16)
def _compiled(template: str):
    return _environment().from_string(template)


def _messages(messages) -> list[dict]:
    """Copies of the messages as ``transformers`` hands them to the template: keys whose value
    is ``None`` dropped, and a message's reasoning under each of its names."""
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise TypeError(f"message {i}: expected a dict with 'role' and 'content', got "
                            f"{type(message).__name__}")
        message = json.loads(json.dumps({k: v for k, v in message.items() if v is not None}))
        reasoning = next((message[k] for k in REASONING_FIELDS if message.get(k) is not None), None)
        if reasoning is not None:
            message = {"thinking": reasoning, **message, "reasoning_content": reasoning}
        out.append(message)
    return out


def render_chat(template: str, messages, *, add_generation_prompt: bool = False, tools=None,
                documents=None, special_tokens: dict | None = None, **variables) -> tuple[str, list]:
    """The text of ``messages`` rendered with ``template``, and the ``(start, stop)`` characters
    of each ``{% generation %}`` block in it. ``special_tokens``: the tokenizer's
    (``bos_token``, ``eos_token``, ...), which ``variables`` override; ``tools``: JSON schemas."""
    if not messages:
        raise ValueError("expected a conversation of at least one message, got none")
    for name, value in (("tools", tools), ("documents", documents)):
        if value is not None and not all(isinstance(v, dict) for v in value):
            raise TypeError(f"expected {name} a list of dicts (JSON schemas for tools), got {value!r}")
    blocks, spans = [], []
    token = _rendering.set((blocks, spans))
    try:
        for block in _compiled(template).generate(
                messages=_messages(messages), tools=tools, documents=documents,
                add_generation_prompt=add_generation_prompt, **{**(special_tokens or {}), **variables}):
            blocks.append(block)
    finally:
        _rendering.reset(token)
    return "".join(blocks), spans


class ChatEncoding(NamedTuple):
    """A rendered conversation: its ``text``, its token ``ids`` and ``assistant_mask`` (1 for
    each token inside a ``{% generation %}`` block, else 0; all 0 for a template without)."""

    text: str
    ids: list
    assistant_mask: list


def apply_chat_template(tokenizer, template: str, messages, *, add_generation_prompt: bool = False,
                        **variables) -> ChatEncoding:
    """``transformers``' ``apply_chat_template(messages, add_generation_prompt=...,
    return_dict=True, return_assistant_tokens_mask=True)``: the text (:func:`render_chat` with
    the tokenizer's special tokens), its ids without the post-processor's tokens, and the
    assistant mask. ``tokenizer``: one of :func:`~minillm.data.hf_tokenizers.read_tokenizer_folder`'s
    byte-level or SentencePiece BPEs, or one of minillm's own (``encode_with_offsets``,
    ``special_tokens_map``)."""
    text, spans = render_chat(template, messages, add_generation_prompt=add_generation_prompt,
                              special_tokens=tokenizer.special_tokens_map, **variables)
    ids, offsets = tokenizer.encode_with_offsets(text)
    mask, k = [0] * len(ids), 0
    for i, (start, stop) in enumerate(offsets):       # a token overlapping a block is the assistant's
        while k < len(spans) and start >= spans[k][1]:
            k += 1
        if k == len(spans):
            break
        if stop > spans[k][0]:
            mask[i] = 1
    return ChatEncoding(text, ids, mask)
