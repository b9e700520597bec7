"""Our chat rendering against transformers' own, for the same tokenizer files, read from the same Hub cache.

For each fixture family (ChatML/Qwen-style with tools and reasoning, Llama-3-style with bos, header ids and
the date, Gemma/Mistral-style refusing bad roles, Hermes-style with named templates in the config or in
files) and several conversations, with and without ``add_generation_prompt``: the rendered text and the
token ids must equal ``transformers.PreTrainedTokenizerFast.from_pretrained(...).apply_chat_template``'s.
Skipped where transformers is not installed (it is in the dev environment).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

from tinker_actors.tokenizers import ChatTemplateError, TokenizerHandle, get_tokenizer

from .helpers import FAMILIES, lay_out_repo

transformers = pytest.importorskip("transformers")

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "The weather of a city today",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "<city> & name"}},
                   "required": ["city"]}}}]
CALL = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}

CONVERSATIONS: dict[str, list[dict[str, Any]]] = {
    "one user turn": [{"role": "user", "content": "Hi there"}],
    "system and turns": [
        {"role": "system", "content": "Answer briefly.  "},
        {"role": "user", "content": "What colour is the sea?"},
        {"role": "assistant", "content": "Grey near the rocks, green farther out."},
        {"role": "user", "content": "And the boats? Ünïcödé, \"quotes\" & <tags>"},
    ],
    "tool call and result": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [CALL]},
        {"role": "tool", "content": "{\"temperature\": 21}"},
        {"role": "assistant", "content": "It is 21 degrees."},
    ],
    "reasoning": [
        {"role": "user", "content": "2 + 2?"},
        {"role": "assistant", "content": "4", "reasoning_content": "Two and two make four."},
        {"role": "user", "content": "And 3 + 3?"},
        {"role": "assistant", "content": "<think>\nThree and three.\n</think>\n\n6"},
    ],
}
# The Gemma-style template refuses a tool role and non-alternating turns: those are compared as refusals.
REFUSED = {("strict-alternation", "tool call and result")}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("parity-cache")
    for family in FAMILIES:
        lay_out_repo(directory, f"fixture-org/{family}", family)
    return directory


def both(cache: Path, family: str) -> tuple[TokenizerHandle, Any]:
    ours = get_tokenizer(f"fixture-org/{family}", cache_dir=cache)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = transformers.PreTrainedTokenizerFast.from_pretrained(
            f"fixture-org/{family}", cache_dir=cache, local_files_only=True)
    return ours, theirs


def assert_same(ours: TokenizerHandle, theirs: Any, conversation: Any, **kwargs: Any) -> str:
    try:
        expected_text = theirs.apply_chat_template(conversation, tokenize=False, **kwargs)
    except Exception as refusal:  # transformers lets the template's jinja2 error through
        with pytest.raises(ChatTemplateError) as caught:
            ours.apply_chat_template(conversation, tokenize=False, **kwargs)
        assert caught.value.template_message == str(refusal)
        return ""
    assert ours.apply_chat_template(conversation, tokenize=False, **kwargs) == expected_text
    expected_ids = theirs.apply_chat_template(conversation, tokenize=True, return_dict=False, **kwargs)
    assert ours.apply_chat_template(conversation, **kwargs) == expected_ids
    return str(expected_text)


def test_the_special_tokens_and_templates_are_read_as_transformers_reads_them(cache: Path) -> None:
    for family in FAMILIES:
        ours, theirs = both(cache, family)
        assert ours.special_tokens_map == theirs.special_tokens_map, family
        assert ours.chat_template == theirs.chat_template, family
        assert ours.eos_token_id == theirs.eos_token_id and ours.bos_token_id == theirs.bos_token_id, family


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("conversation", list(CONVERSATIONS))
@pytest.mark.parametrize("add_generation_prompt", [False, True])
def test_rendered_text_and_ids_match_transformers(cache: Path, family: str, conversation: str,
                                                  add_generation_prompt: bool) -> None:
    ours, theirs = both(cache, family)
    text = assert_same(ours, theirs, CONVERSATIONS[conversation], add_generation_prompt=add_generation_prompt,
                       date_string="26 Jul 2024")
    assert (text == "") == ((family, conversation) in REFUSED)


@pytest.mark.parametrize("family", ["chatml-qwen", "llama3", "hermes-multi", "chatml-files"])
@pytest.mark.parametrize("add_generation_prompt", [False, True])
def test_tools_documents_and_template_arguments_match_transformers(cache: Path, family: str,
                                                                   add_generation_prompt: bool) -> None:
    ours, theirs = both(cache, family)
    chat = CONVERSATIONS["tool call and result"]
    assert "get_weather" in assert_same(ours, theirs, chat, tools=TOOLS, date_string="1 Jan 2025",
                                        add_generation_prompt=add_generation_prompt)
    extras: dict[str, dict[str, Any]] = {
        "chatml-qwen": {"enable_thinking": False},
        "llama3": {"tools": TOOLS, "tools_in_user_message": False, "date_string": "2 Feb 2025"},
        "hermes-multi": {"tools": TOOLS, "max_tool_results": 0,
                         "documents": [{"title": "Tides", "text": "High at noon."}]},
        "chatml-files": {"chat_template": "tool_use", "documents": [{"title": "A", "text": "B"}]},
    }
    assert_same(ours, theirs, chat, add_generation_prompt=add_generation_prompt, **extras[family])


def test_llama_3_writes_todays_date_as_transformers_does(cache: Path) -> None:
    ours, theirs = both(cache, "llama3")
    chat = CONVERSATIONS["one user turn"]
    for _attempt in range(2):  # the two renderings could straddle midnight: then once more
        expected = theirs.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        if ours.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == expected:
            break
    else:
        pytest.fail("the rendered date differs from transformers'")
    assert expected.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>")


@pytest.mark.parametrize("family", FAMILIES)
def test_continue_final_message_and_batches_match_transformers(cache: Path, family: str) -> None:
    ours, theirs = both(cache, family)
    prefilled = [*CONVERSATIONS["system and turns"], {"role": "assistant", "content": "The boats are "}]
    assert_same(ours, theirs, prefilled, continue_final_message=True, date_string="3 Mar 2025")
    batch = [CONVERSATIONS["one user turn"], CONVERSATIONS["system and turns"]]
    assert_same(ours, theirs, batch, add_generation_prompt=True, date_string="3 Mar 2025")


def test_refusals_of_the_strict_template_match_transformers(cache: Path) -> None:
    ours, theirs = both(cache, "strict-alternation")
    for chat in ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
                 [{"role": "assistant", "content": "first"}],
                 [{"role": "system", "content": "s"}, {"role": "tool", "content": "t"}]):
        assert assert_same(ours, theirs, chat) == ""


def test_template_files_take_precedence_over_the_config_as_in_transformers(tmp_path: Path) -> None:
    import shutil

    from .helpers import FIXTURES

    both_ways = tmp_path / "both-ways"
    shutil.copytree(FIXTURES / "hermes-multi", both_ways)  # named templates in the config ...
    (both_ways / "chat_template.jinja").write_text("{{ 'from the file' }}")  # ... and a template file
    ours = get_tokenizer(str(both_ways))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = transformers.PreTrainedTokenizerFast.from_pretrained(str(both_ways))
    assert ours.chat_template == theirs.chat_template == "{{ 'from the file' }}"
    assert_same(ours, theirs, CONVERSATIONS["one user turn"])
