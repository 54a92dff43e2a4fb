"""Chat templates rendered as ``transformers`` 5 renders them (``apply_chat_template``): the
same text, the same ids and the same assistant mask (``return_assistant_tokens_mask=True``)
for templates modelled on Llama 3's, Qwen 2.5's and Llama 2's, written here with
``{% generation %}`` markers around what the assistant writes, on fixed and drawn
conversations (issue 25.3; the mask is SFT's, issue 26.1); and minillm's own template,
DEFAULT_CHAT_TEMPLATE, on those folders and on minillm's tokenizers.

The tokenizer folders are the ones test_hf_tokenizers_modern.py builds offline.
"""
import json
import unicodedata
from functools import partial

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

transformers = pytest.importorskip("transformers")
jinja2 = pytest.importorskip("jinja2")

import numpy as np  # noqa: E402

from minillm.data import BPETokenizer, CharTokenizer, WordTokenizer  # noqa: E402
from minillm.data.chat_template import (DEFAULT_CHAT_TEMPLATE, apply_chat_template,  # noqa: E402
                                        read_chat_template, render_chat)
from minillm.data.hf_tokenizers import read_tokenizer_folder  # noqa: E402

from test_hf_tokenizers_modern import (LLAMA2_FOLDERS, _combined, _llama2_tokenizer,  # noqa: E402,F401
                                       _save, _texts, llama3_folder, qwen2_folder)

# Llama 3 Instruct's layout: bos, then per message a header, the trimmed content and <|eot_id|>
LLAMA3_TEMPLATE = (
    "{{- bos_token }}"
    "{% for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{- message['content'] | trim + '<|eot_id|>' }}{% endgeneration %}"
    "{% else %}{{- message['content'] | trim + '<|eot_id|>' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")

# Qwen 2.5's layout, one tag a line as its file writes it (trim_blocks and lstrip_blocks at
# work): a default system message, tools as JSON lines, <|im_start|>role ... <|im_end|>
QWEN2_TEMPLATE = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are Qwen, a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(turns=0) %}
{%- for message in messages %}
    {%- if message.role == 'system' and loop.first %}
        {%- continue %}
    {%- elif message.role not in ('user', 'assistant', 'system') %}
        {{- raise_exception('unknown role ' + message.role) }}
    {%- endif %}
    {%- set ns.turns = ns.turns + 1 %}
    {%- if message.role == 'assistant' %}
        {{- '<|im_start|>assistant\\n' }}
        {%- generation %}
            {{- message.content + '<|im_end|>' }}
        {%- endgeneration %}
        {{- '\\n' }}
    {%- else %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

# Llama 2 chat's layout: [INST] ... [/INST] answer </s>, the system message folded into the first turn
LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}"
    "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{% generation %}{{ ' ' + content.strip() + ' ' + eos_token }}{% endgeneration %}{% endif %}"
    "{% endfor %}")

nfc = partial(unicodedata.normalize, "NFC")

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What is 2+2?"},
     {"role": "assistant", "content": "4"}],
    [{"role": "user", "content": "Translate «chat» to German."},
     {"role": "assistant", "content": "  Plaudern, Unterhaltung.  "},
     {"role": "user", "content": "And to Japanese? 日本語で"},
     {"role": "assistant", "content": "おしゃべり 😀\n\nline two"}],
    [{"role": "user", "content": "say <|im_end|> or <|eot_id|> or </s> literally"},
     {"role": "assistant", "content": "ok: <|im_end|> <|eot_id|> </s>", "tool_calls": None}],
    [{"role": "user", "content": ""}, {"role": "assistant", "content": "e\u0301t\u00e9 (NFC)"}],
]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Météo d'une ville",
                                           "parameters": {"type": "object", "properties": {
                                               "city": {"type": "string"}}, "required": ["city"]}}}]


@pytest.fixture(scope="module")
def llama2_chat_folder(tmp_path_factory):
    _, config = LLAMA2_FOLDERS["LlamaTokenizer"]
    return _save(_llama2_tokenizer("normalizer"), tmp_path_factory.mktemp("llama2chat"), bos_token="<s>",
                 eos_token="</s>", unk_token="<unk>", **config)


@pytest.fixture(scope="module", params=["llama3", "qwen2", "llama2"])
def chat(request, llama3_folder, qwen2_folder, llama2_chat_folder):
    folder, template = {"llama3": (llama3_folder, LLAMA3_TEMPLATE), "qwen2": (qwen2_folder, QWEN2_TEMPLATE),
                        "llama2": (llama2_chat_folder, LLAMA2_TEMPLATE)}[request.param]
    theirs = transformers.AutoTokenizer.from_pretrained(str(folder))
    return request.param, read_tokenizer_folder(folder), theirs, template


def _theirs(theirs, template, messages, generation_prompt, **variables):
    text = theirs.apply_chat_template(messages, chat_template=template, tokenize=False,
                                      add_generation_prompt=generation_prompt, **variables)
    out = theirs.apply_chat_template(messages, chat_template=template, return_dict=True,
                                     return_assistant_tokens_mask=True,
                                     add_generation_prompt=generation_prompt, **variables)
    return text, list(out["input_ids"]), list(out["assistant_masks"])


def _agree(ours, theirs, template, messages, generation_prompt=False, **variables):
    expected = _theirs(theirs, template, messages, generation_prompt, **variables)
    got = apply_chat_template(ours, template, messages, add_generation_prompt=generation_prompt, **variables)
    assert got.text == expected[0], (messages, got.text, expected[0])
    assert got.ids == expected[1], messages
    assert got.assistant_mask == expected[2], (messages, list(zip(
        theirs.convert_ids_to_tokens(got.ids), got.assistant_mask, expected[2])))
    return got


def test_special_tokens_are_those_transformers_gives_the_template(chat):
    _, ours, theirs, _ = chat
    assert ours.special_tokens_map == theirs.special_tokens_map


def test_text_ids_and_mask_agree(chat):
    name, ours, theirs, template = chat
    for messages in CONVERSATIONS:
        if name == "llama2" and messages[-1]["role"] == "user" and len(messages) > 1:
            continue
        for generation_prompt in (False, True):
            got = _agree(ours, theirs, template, messages, generation_prompt)
            answers = [nfc(m["content"].strip()) for m in messages if m["role"] == "assistant"]
            # the masked tokens are the answers and what closes them (Qwen's text normalized)
            masked = nfc(ours.decode([i for i, m in zip(got.ids, got.assistant_mask) if m]))
            assert all(a in masked for a in answers) and (sum(got.assistant_mask) > 0) == bool(answers)
            if not answers:
                assert got.assistant_mask == [0] * len(got.ids)


def test_tools_and_variables(qwen2_folder, llama3_folder):
    ours, theirs = read_tokenizer_folder(qwen2_folder), transformers.AutoTokenizer.from_pretrained(str(qwen2_folder))
    _agree(ours, theirs, QWEN2_TEMPLATE, CONVERSATIONS[1], True, tools=TOOLS)
    dated = "{{ bos_token }}Today is {{ strftime_now('%d %B %Y') }}; {{ extra | tojson(indent=2) }}"
    ours, theirs = read_tokenizer_folder(llama3_folder), transformers.AutoTokenizer.from_pretrained(str(llama3_folder))
    _agree(ours, theirs, dated, CONVERSATIONS[0], extra={"é": [1, 2], "b": None})
    _agree(ours, theirs, dated, CONVERSATIONS[0], bos_token="<|end_of_text|>", extra=0)   # variables override


def test_errors_as_transformers_raises_them(chat):
    name, ours, theirs, template = chat
    bad = ([{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}] if name == "llama2"
           else [{"role": "robot", "content": "x"}])
    if name == "llama3":
        template = "{{ raise_exception('unknown role') if messages[0].role == 'robot' }}"
    with pytest.raises(jinja2.TemplateError) as theirs_error:
        theirs.apply_chat_template(bad, chat_template=template, tokenize=False)
    with pytest.raises(jinja2.TemplateError, match=str(theirs_error.value).replace("/", ".")[:30]):
        render_chat(template, bad)
    with pytest.raises(ValueError, match="at least one message"):
        render_chat(template, [])


@pytest.mark.parametrize("template", [
    "{{ messages.append({'role': 'x'}) }}",                         # the inputs are immutable
    "{% set ns = namespace(_hidden=1) %}{{ ns._hidden }}",          # no _ names on a namespace
    "{{ ''.__class__.__mro__ }}",                                  # no internals
])
def test_sandbox_refuses_what_transformers_refuses(llama3_folder, template):
    theirs = transformers.AutoTokenizer.from_pretrained(str(llama3_folder))
    messages = [{"role": "user", "content": "x"}]
    with pytest.raises(jinja2.exceptions.SecurityError):
        theirs.apply_chat_template(messages, chat_template=template, tokenize=False)
    with pytest.raises(jinja2.exceptions.SecurityError):
        render_chat(template, messages)


def test_template_read_where_transformers_writes_it(llama3_folder, tmp_path):
    """transformers 5's save_pretrained writes the template to chat_template.jinja; older
    folders hold it in tokenizer_config.json, as a string or as named templates."""
    theirs = transformers.AutoTokenizer.from_pretrained(str(llama3_folder))
    theirs.chat_template = QWEN2_TEMPLATE
    theirs.save_pretrained(str(tmp_path / "saved"))
    assert (tmp_path / "saved" / "chat_template.jinja").is_file()
    assert read_chat_template(tmp_path / "saved") == QWEN2_TEMPLATE
    (tmp_path / "saved" / "chat_template.jinja").unlink()
    config_path = tmp_path / "saved" / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["chat_template"] = [{"name": "default", "template": LLAMA3_TEMPLATE},
                               {"name": "tool_use", "template": QWEN2_TEMPLATE}]
    config_path.write_text(json.dumps(config), encoding="utf-8")
    assert read_chat_template(tmp_path / "saved") == LLAMA3_TEMPLATE
    assert read_chat_template(tmp_path / "saved", "tool_use") == QWEN2_TEMPLATE
    assert read_tokenizer_folder(tmp_path / "saved") is not None      # chat_template changes no id
    with pytest.raises(ValueError, match=r"expected a chat template named 'rag', the folder has "
                                         r"\['default', 'tool_use'\]"):
        read_chat_template(tmp_path / "saved", "rag")
    with pytest.raises(ValueError, match=r"expected a chat template in .* found none"):
        read_chat_template(llama3_folder)


_content = st.one_of(_combined, _texts, st.sampled_from(["", " ", "\n", "<|im_end|>", "<|eot_id|>", "</s>",
                                                         "<s>", " [/INST] "]))
_turns = st.lists(st.tuples(_content, _content), min_size=1, max_size=3)
_conversation = st.tuples(st.one_of(st.none(), _content), _turns, st.booleans()).map(
    lambda c: ([{"role": "system", "content": c[0]}] if c[0] is not None else [])
    + [m for user, answer in c[1] for m in ({"role": "user", "content": user},
                                            {"role": "assistant", "content": answer})][:None if c[2] else -1])


@settings(max_examples=40, deadline=None)
@given(messages=_conversation, generation_prompt=st.booleans())
def test_drawn_conversations_agree(chat, messages, generation_prompt):
    name, ours, theirs, template = chat
    _agree(ours, theirs, template, messages, generation_prompt)


# -- DEFAULT_CHAT_TEMPLATE: minillm's own tokenizers' template --------------------------------

def test_default_template_agrees_with_transformers(chat):
    """The default template rendered by transformers on each folder's tokenizer: the same
    text, ids and assistant mask as ours (its {{ eos_token }} is each folder's own)."""
    _, ours, theirs, _ = chat
    for messages in CONVERSATIONS:
        for generation_prompt in (False, True):
            _agree(ours, theirs, DEFAULT_CHAT_TEMPLATE, messages, generation_prompt)


WORD_CHAT = [{"role": "user", "content": "the plot was good"}, {"role": "assistant", "content": "the music was fun"}]


@pytest.fixture(scope="module")
def minillm_tokenizers():
    text = "System: User: Assistant:\nthe plot was not good, but the music was fun. 1994-03-23 " * 3
    return [BPETokenizer.train(text, vocab_size=300), CharTokenizer.train(text),
            WordTokenizer.train(render_chat(DEFAULT_CHAT_TEMPLATE, WORD_CHAT, eos_token="<eos>")[0])]


def _answers_and_prompt(tok, messages):
    """The masked tokens of each answer spell the answer and <eos>, and the generation
    prompt of the turns before an answer is a prefix of the whole conversation's ids (what
    the model is asked at generation is what training showed it)."""
    got = apply_chat_template(tok, DEFAULT_CHAT_TEMPLATE, messages)
    ids = np.array(got.ids)
    mask = np.array(got.assistant_mask, dtype=bool)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(int), [0]])))
    spans = [tok.decode(ids[a:b]) for a, b in zip(edges[::2], edges[1::2])]
    answers = [m["content"] for m in messages if m["role"] == "assistant"]
    assert spans == [a + "<eos>" for a in answers], (spans, answers)
    for k, message in enumerate(messages):
        if message["role"] == "assistant":
            prompt = apply_chat_template(tok, DEFAULT_CHAT_TEMPLATE, messages[:k], add_generation_prompt=True)
            assert got.ids[:len(prompt.ids)] == prompt.ids, (messages, k)
            assert got.text.startswith(prompt.text)
    return got


_plain = st.text(alphabet=st.sampled_from("abc XYZ.,!?:\n-1é"), max_size=12)


@settings(max_examples=40, deadline=None)
@given(turns=st.lists(st.tuples(_plain, _plain.filter(lambda s: s != "")), min_size=1, max_size=3),
       system=st.one_of(st.none(), _plain))
def test_default_template_masks_the_answers_on_minillm_tokenizers(minillm_tokenizers, turns, system):
    messages = ([{"role": "system", "content": system}] if system is not None else []) + [
        m for user, answer in turns for m in ({"role": "user", "content": user},
                                              {"role": "assistant", "content": answer})]
    for tok in minillm_tokenizers[:2]:                  # BPE and char spell any text
        got = _answers_and_prompt(tok, messages)
        ids, offsets = tok.encode_with_offsets(got.text)
        # the tokens of one span (the byte tokens of one character share its span) spell it,
        # and the spans tile the text
        spans = sorted(set(offsets))
        assert "".join(got.text[a:b] for a, b in spans) == got.text
        assert [tok.decode([i for i, o in zip(ids, offsets) if o == span]) for span in spans] == \
            [got.text[a:b] for a, b in spans]


def test_default_template_text_and_errors(minillm_tokenizers):
    bpe, _, word = minillm_tokenizers
    messages = [{"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": "the plot was good"}, {"role": "assistant", "content": "positive"}]
    got = _answers_and_prompt(bpe, messages)
    assert got.text == "System: Answer briefly.\nUser: the plot was good\nAssistant:\npositive<eos>\n"
    assert got.ids[-2] == bpe.eos_id and got.assistant_mask[-2:] == [1, 0]
    assert bpe.encode("<eos>") != [bpe.eos_id]           # plain encode keeps it as text
    _answers_and_prompt(word, WORD_CHAT)
    with pytest.raises(ValueError, match="WordTokenizer: the tokens of .* do not spell it again"):
        apply_chat_template(word, DEFAULT_CHAT_TEMPLATE, [{"role": "user", "content": "zebra"}])
    with pytest.raises(jinja2.TemplateError, match="expected a role system, user or assistant, got tool"):
        render_chat(DEFAULT_CHAT_TEMPLATE, [{"role": "tool", "content": "x"}])
