"""apply_chat_template: the environment chat templates are written for, and its checks (no transformers needed)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
import pytest

import tinker_actors as tinker
from tinker_actors.tokenizers import ChatTemplateError, TokenizerHandle, get_tokenizer

from .helpers import FIXTURES

CHAT = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]


@pytest.fixture(scope="module")
def tiny() -> TokenizerHandle:
    return get_tokenizer("tiny-bpe")


def render(tokenizer: TokenizerHandle, template: str, messages: Any = None, **kwargs: Any) -> str:
    text: str = tokenizer.apply_chat_template(messages if messages is not None else CHAT, chat_template=template,
                                              tokenize=False, **kwargs)
    return text


def test_raise_exception_in_a_template_is_a_chat_template_error_with_its_words() -> None:
    tokenizer = get_tokenizer(str(FIXTURES / "strict-alternation"))
    with pytest.raises(ChatTemplateError) as caught:
        tokenizer.apply_chat_template([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    assert caught.value.template_message == "Conversation roles must alternate user/assistant/user/assistant/..."
    assert "refused the conversation" in str(caught.value) and isinstance(caught.value, tinker.InvalidInputError)
    with pytest.raises(ChatTemplateError, match="Unsupported role 'tool'"):
        tokenizer.apply_chat_template([{"role": "tool", "content": "42"}])


def test_trim_blocks_and_lstrip_blocks_are_on(tiny: TokenizerHandle) -> None:
    template = "{% for m in messages %}\n    {% if true %}\n[{{ m.content }}]\n    {% endif %}\n{% endfor %}"
    assert render(tiny, template) == "[Hi]\n[Hello!]\n"


def test_tojson_is_plain_json_not_html_escaped(tiny: TokenizerHandle) -> None:
    value = {"b": "<tag> & 'quote'", "a": "é"}
    assert render(tiny, "{{ value | tojson }}", value=value) == '{"b": "<tag> & \'quote\'", "a": "é"}'
    assert render(tiny, "{{ value | tojson(sort_keys=true) }}", value=value).startswith('{"a": "é"')
    assert render(tiny, "{{ value | tojson(indent=2) }}", value={"a": 1}) == '{\n  "a": 1\n}'
    assert render(tiny, "{{ value | tojson(ensure_ascii=true) }}", value="é") == '"\\u00e9"'
    assert render(tiny, "{{ value | tojson(separators=(',', ':')) }}", value=[1, 2]) == "[1,2]"


def test_strftime_now_loopcontrols_dict_and_generation_blocks(tiny: TokenizerHandle) -> None:
    today = datetime.now().strftime("%Y-%m-%d")
    assert render(tiny, "{{ strftime_now('%Y-%m-%d') }}") in (today, datetime.now().strftime("%Y-%m-%d"))
    assert render(tiny, "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ m.role }}"
                        "{% endfor %}") == "user"
    assert render(tiny, "{% set d = dict(a=1, b=2) %}{{ d.a + d.b }} {{ dict.fromkeys(['x'], 0) }}") == "3 {'x': 0}"
    assert render(tiny, "{% for m in messages %}{% generation %}<{{ m.content }}>{% endgeneration %}{% endfor %}") == (
        "<Hi><Hello!>")


def test_the_sandbox_holds(tiny: TokenizerHandle) -> None:
    for escape in ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "{{ messages.append(1) }}",
                   "{% set ns = namespace(_private=1) %}", "{% set ns = namespace() %}{% set ns._x = 1 %}",
                   "{{ cycler.__init__.__globals__ }}"):
        with pytest.raises(ChatTemplateError):
            render(tiny, escape)


def test_special_tokens_and_extra_arguments_reach_the_template(tiny: TokenizerHandle) -> None:
    assert render(tiny, "{{ eos_token }}|{{ bos_token is defined }}") == "<|endoftext|>|False"
    assert render(tiny, "{{ eos_token }}", eos_token="<override>") == "<override>"  # kwargs win, as in transformers
    assert render(tiny, "{{ flag }} {{ add_generation_prompt }}", flag=np.bool_(False),
                  add_generation_prompt=True) == "False True"
    with pytest.raises(tinker.InvalidInputError, match="not as messages="):
        extra: dict[str, Any] = {"messages": []}
        tiny.apply_chat_template(CHAT, chat_template="x", **extra)


def test_messages_are_normalised_as_transformers_does(tiny: TokenizerHandle) -> None:
    @dataclasses.dataclass
    class Message:
        role: str
        content: str | None
        tool_calls: list[Any] | None = None

    class Pydantic(pydantic.BaseModel):
        role: str
        content: str

    template = ("{% for m in messages %}{{ m.role }}:{{ m.content | default('-') }}:{{ m.keys() | list | length }};"
                "{% endfor %}")
    rendered = render(tiny, template, [Message("user", "a"), Pydantic(role="assistant", content="b"),
                                       {"role": "assistant", "content": None, "tool_calls": None}])
    assert rendered == "user:a:2;assistant:b:2;assistant:-:1;"  # None-valued keys dropped
    reasoning = render(tiny, "{{ messages[0].reasoning_content }}/{{ messages[0].thinking }}",
                       [{"role": "assistant", "content": "x", "reasoning": "because"}])
    assert reasoning == "because/because"
    placeholder = render(tiny, "{{ messages[0].content }}", [{"role": "user", "content": object()}])
    assert placeholder == "<object>"  # never a live object in the sandbox


def test_continue_final_message_leaves_the_last_message_open(tiny: TokenizerHandle) -> None:
    chat = [*CHAT, {"role": "assistant", "content": "The answer is"}]
    text = tiny.apply_chat_template(chat, tokenize=False, continue_final_message=True)
    assert text.endswith("assistant: The answer is")
    with pytest.raises(tinker.InvalidInputError, match="cannot be used together"):
        tiny.apply_chat_template(chat, continue_final_message=True, add_generation_prompt=True)
    with pytest.raises(tinker.InvalidInputError, match="no 'reasoning_content' to continue"):
        tiny.apply_chat_template(chat, continue_final_message="reasoning_content", tokenize=False)
    thinking = [*CHAT, {"role": "assistant", "content": "x", "thinking": "Let me see"}]
    with pytest.raises(tinker.InvalidInputError, match="never reads"):  # the tiny template shows no reasoning
        tiny.apply_chat_template(thinking, continue_final_message="reasoning_content", tokenize=False)


def test_batches_tokens_and_return_dict(tiny: TokenizerHandle) -> None:
    texts = tiny.apply_chat_template([CHAT, CHAT[:1]], tokenize=False)
    assert texts == ["user: Hi<|endoftext|>\nassistant: Hello!<|endoftext|>\n", "user: Hi<|endoftext|>\n"]
    ids = tiny.apply_chat_template([CHAT, CHAT[:1]])
    assert ids == [tiny.encode(text, add_special_tokens=False) for text in texts]
    single = tiny.apply_chat_template(CHAT, return_dict=True)
    assert single == {"input_ids": ids[0], "attention_mask": [1] * len(ids[0])}


def test_bad_input_is_refused_clearly(tiny: TokenizerHandle) -> None:
    with pytest.raises(tinker.InvalidInputError, match="empty conversation"):
        tiny.apply_chat_template([])
    with pytest.raises(tinker.InvalidInputError, match="chat messages are dicts"):
        tiny.apply_chat_template(["hello"])
    with pytest.raises(tinker.InvalidInputError, match="tools are JSON schemas"):
        tiny.apply_chat_template(CHAT, tools=[len])  # type: ignore[list-item]
    with pytest.raises(tinker.InvalidInputError, match="return_tensors"):
        tiny.apply_chat_template(CHAT, return_tensors="pt")
    tiny.apply_chat_template(CHAT, padding=False, return_tensors=None)  # transformers' defaults are fine
    with pytest.raises(ChatTemplateError, match="does not compile"):
        render(tiny, "{% for %}")


def test_template_selection(tmp_path: Path) -> None:
    no_template = get_tokenizer(str(FIXTURES / "chatml-qwen" / "tokenizer.json"))
    with pytest.raises(ChatTemplateError, match="has no chat template"):
        no_template.apply_chat_template(CHAT)
    multi = get_tokenizer(str(FIXTURES / "hermes-multi"))
    assert multi.get_chat_template() == multi.chat_template["default"]  # type: ignore[index]
    assert multi.get_chat_template(tools=[{}]) == multi.chat_template["tool_use"]  # type: ignore[index]
    assert multi.get_chat_template("tool_use") == multi.chat_template["tool_use"]  # type: ignore[index]
    assert multi.get_chat_template("{{ 'inline' }}") == "{{ 'inline' }}"
    no_default = TokenizerHandle(multi.tokenizer, name_or_path="x", chat_template={"a": "1", "b": "2"})
    with pytest.raises(ChatTemplateError, match=r"pass chat_template= one of \['a', 'b'\]"):
        no_default.apply_chat_template(CHAT)
