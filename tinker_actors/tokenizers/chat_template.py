"""Rendering a chat with a model's chat template, with the semantics of transformers' ``apply_chat_template``.

Chat templates come from the Hub: they are untrusted code, so they run in Jinja2's
``ImmutableSandboxedEnvironment`` (Jinja2 3.1.6 or later: older versions have known sandbox escapes),
and everything they see is rebuilt from plain JSON-like values first. The environment is the one model
authors write their templates for (transformers 4.4x to 5.x):

* ``trim_blocks`` and ``lstrip_blocks`` on; the ``loopcontrols`` extension (``break``/``continue``);
  a ``{% generation %}...{% endgeneration %}`` block, which renders its body (transformers uses it to
  mark assistant tokens);
* ``raise_exception(message)``: the template refuses the conversation (a :class:`ChatTemplateError`
  here, carrying the template's message);
* ``strftime_now(format)``: the local time now (Llama 3 templates print today's date);
* the ``tojson`` filter is plain ``json.dumps`` (``ensure_ascii=False``, ``indent``, ``separators``,
  ``sort_keys``), not Jinja's HTML-escaping one;
* ``dict(...)`` and ``namespace(...)`` globals that refuse underscore-prefixed names;
* the variables: ``messages``, ``tools``, ``documents``, ``add_generation_prompt``, the named special
  tokens (``bos_token``, ``eos_token``, ...), then the caller's extra keyword arguments (which win).

Messages are normalised as transformers normalises them: objects become dicts (pydantic models through
``model_dump``, dataclasses field by field), top-level keys whose value is None are dropped (APIs send
``content=None``; templates handle a missing key), and a message's reasoning, under any of
``reasoning_content``, ``thinking`` or ``reasoning``, is also given under ``reasoning_content`` and
``thinking``, the names templates read.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, NoReturn

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.parser
import jinja2.utils
import numpy as np
from jinja2.sandbox import ImmutableSandboxedEnvironment

from tinker_actors.errors import InvalidInputError
from tinker_actors.tokenizers.errors import ChatTemplateError
from tinker_actors.tokenizers.files import ChatTemplates

__all__ = ["compile_chat_template", "is_batched", "render_conversations", "select_chat_template"]

REASONING_FIELDS: tuple[str, ...] = ("reasoning_content", "thinking", "reasoning")
_CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "  # appended to the continued text, found again, cut off


class _TemplateRaised(jinja2.TemplateError):
    """``raise_exception`` in a template: a jinja2 TemplateError, as in transformers, told apart from
    errors of the template itself."""


def _raise_exception(message: object) -> NoReturn:
    raise _TemplateRaised(str(message))


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | str | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _refuse_private_name(name: object) -> None:
    if isinstance(name, str) and name.startswith("_"):
        raise jinja2.exceptions.SecurityError(
            f"a chat template may not store an underscore-prefixed name ({name!r}) on a namespace")


class _GuardedNamespace(jinja2.utils.Namespace):
    """``namespace(...)`` for templates: no underscore-prefixed attributes (no way to CPython internals)."""

    def __init__(*args: Any, **kwargs: Any) -> None:
        # The instance comes in args, so that namespace(self=...) stays an ordinary attribute (as Jinja's).
        instance, rest = args[0], args[1:]
        values = dict(*rest, **kwargs)
        for name in values:
            _refuse_private_name(name)
        jinja2.utils.Namespace.__init__(instance, values)

    def __setitem__(self, name: str, value: Any) -> None:
        _refuse_private_name(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)


class _DictBuilder:
    """``dict(...)`` for templates: builds plain dicts, and offers nothing else of the dict type."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return dict(*args, **kwargs)

    def fromkeys(self, keys: Any, value: Any = None) -> dict[Any, Any]:
        return dict.fromkeys(keys, value)


class _GenerationBlock(jinja2.ext.Extension):
    """``{% generation %}...{% endgeneration %}``: renders its body unchanged."""

    tags = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    def _body(self, caller: Callable[[], str]) -> str:
        return caller()


@functools.cache
def _environment() -> ImmutableSandboxedEnvironment:
    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationBlock, jinja2.ext.loopcontrols])
    environment.filters["tojson"] = _tojson
    environment.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now,
                               dict=_DictBuilder(), namespace=_GuardedNamespace)
    return environment


@functools.lru_cache(maxsize=64)
def compile_chat_template(template: str) -> jinja2.Template:
    """The compiled template (compiled once per distinct text). Raises :class:`ChatTemplateError`."""
    try:
        return _environment().from_string(template)
    except jinja2.TemplateSyntaxError as error:
        raise ChatTemplateError(f"the chat template does not compile: {error.message} (line {error.lineno})") from None


def select_chat_template(templates: ChatTemplates | None, chat_template: str | None, has_tools: bool,
                         name: str) -> str:
    """The template text to use, chosen as transformers' ``get_chat_template`` chooses it.

    ``chat_template`` is the name of one of the tokenizer's templates or a template text; without it: the
    ``tool_use`` template when tools are given and the tokenizer has one, else ``default``, else the only one.
    """
    if isinstance(templates, Mapping):
        if chat_template is not None:
            return templates.get(chat_template, chat_template)
        if has_tools and "tool_use" in templates:
            return templates["tool_use"]
        if "default" in templates:
            return templates["default"]
        raise ChatTemplateError(
            f"the tokenizer of {name!r} has several chat templates and none is the default: pass "
            f"chat_template= one of {sorted(templates)} (or a template text)")
    if chat_template is not None:
        return chat_template
    if templates is None:
        raise ChatTemplateError(
            f"the tokenizer of {name!r} has no chat template (no chat_template in tokenizer_config.json, no "
            "chat_template.jinja): pass chat_template='...' (a Jinja template) to apply_chat_template")
    return templates


def is_batched(conversation: Any) -> bool:
    """Whether ``conversation`` is several chats (a list of lists of messages), as transformers decides."""
    return isinstance(conversation, list | tuple) and len(conversation) > 0 and (
        isinstance(conversation[0], list | tuple) or hasattr(conversation[0], "messages"))


def render_conversations(template: str, conversations: Sequence[Any], *, add_generation_prompt: bool,
                         continue_final_message: bool | str, tools: Sequence[Any] | None,
                         documents: Sequence[Any] | None, variables: Mapping[str, Any], name: str) -> list[str]:
    """Each conversation rendered with ``template``; ``variables`` are the special tokens and extra kwargs."""
    if continue_final_message and add_generation_prompt:
        raise InvalidInputError(
            "continue_final_message and add_generation_prompt cannot be used together: continue_final_message "
            "leaves the last message open for the model to continue, add_generation_prompt starts a new one")
    compiled = compile_chat_template(template)
    plain_tools = _plain(_tool_schemas(tools)) if tools is not None else None
    plain_documents = _plain(_documents(documents)) if documents is not None else None
    plain_variables = _plain(dict(variables))
    rendered: list[str] = []
    for conversation in conversations:
        chat = _alias_reasoning(_normalized_messages(conversation))
        continued: str | None = None
        if continue_final_message:
            field = continue_final_message if isinstance(continue_final_message, str) else "content"
            continued = _tag_final_message(chat, field, template)
        context = {**plain_variables, "messages": chat, "tools": plain_tools, "documents": plain_documents,
                   "add_generation_prompt": add_generation_prompt}
        text = _render(compiled, context, name)
        if continued is not None:
            text = _cut_after_final_message(text, continued)
        rendered.append(text)
    return rendered


def _render(compiled: jinja2.Template, context: Mapping[str, Any], name: str) -> str:
    try:
        return compiled.render(**context)
    except _TemplateRaised as refusal:
        raise ChatTemplateError(f"the chat template of {name!r} refused the conversation: {refusal.message}",
                                template_message=refusal.message) from None
    except jinja2.exceptions.SecurityError as error:
        raise ChatTemplateError(f"the chat template of {name!r} did something the sandbox forbids: {error}") from None
    except Exception as error:  # an error of the template itself (undefined name, bad operand, ...)
        raise ChatTemplateError(
            f"the chat template of {name!r} failed while rendering: {type(error).__name__}: {error}") from error


def _normalized_messages(conversation: Any) -> list[dict[str, Any]]:
    messages = _as_data(getattr(conversation, "messages", conversation))
    if not isinstance(messages, list | tuple):
        raise InvalidInputError(f"a conversation is a list of messages (dicts), got {type(messages).__name__}")
    if not messages:
        raise InvalidInputError("cannot apply a chat template to an empty conversation: give at least one message")
    normalized: list[dict[str, Any]] = []
    for message in messages:
        if not isinstance(message, Mapping):
            raise InvalidInputError(
                f"chat messages are dicts (or dataclasses, pydantic models) such as "
                f"{{'role': 'user', 'content': '...'}}, got {type(message).__name__}")
        normalized.append(_plain({key: value for key, value in message.items() if value is not None}))
    return normalized


def _alias_reasoning(chat: list[dict[str, Any]]) -> list[dict[str, Any]]:
    aliased = []
    for message in chat:
        reasoning = next((message[key] for key in REASONING_FIELDS if message.get(key) is not None), None)
        if reasoning is not None:
            message = {"thinking": reasoning, **message, "reasoning_content": reasoning}
        aliased.append(message)
    return aliased


def _tag_final_message(chat: list[dict[str, Any]], field: str, template: str) -> str:
    """Mark the text to continue with a tag (found and cut after rendering); returns that text."""
    final = chat[-1].get(field)
    if final is None:
        raise InvalidInputError(f"continue_final_message is set but the final message has no {field!r} to continue")
    fields = [field]
    if field in REASONING_FIELDS:  # reasoning is under several names: tag each copy, the template reads one
        fields = [name for name in REASONING_FIELDS if chat[-1].get(name) == final]
    if not any(name in template for name in fields):
        raise InvalidInputError(
            f"continue_final_message is set to {field!r}, which the chat template never reads")
    if isinstance(final, list | tuple):
        for block in reversed(final):
            if isinstance(block, dict) and "text" in block:
                continued = str(block["text"])
                block["text"] = continued + _CONTINUE_TAG
                return continued
        raise InvalidInputError("continue_final_message is set but the final message has no text block to continue")
    for name in fields:
        chat[-1][name] = chat[-1][name] + _CONTINUE_TAG
    return str(final)


def _cut_after_final_message(text: str, continued: str) -> str:
    tag = _CONTINUE_TAG.strip()
    if continued.strip() not in text or tag not in text:
        raise ChatTemplateError(
            "continue_final_message is set but the final message does not appear in the rendered chat: the "
            "chat template drops part of it")
    at = text.rindex(tag)
    if text[at:at + len(_CONTINUE_TAG)] == _CONTINUE_TAG:
        return text[:at]
    return text[:at].rstrip()  # the template trimmed the message's trailing space: trim to match


def _tool_schemas(tools: Sequence[Any]) -> list[Any]:
    for tool in tools:
        if not isinstance(tool, Mapping):
            raise InvalidInputError(
                "tools are JSON schemas (dicts such as {'type': 'function', 'function': {'name': ..., "
                "'description': ..., 'parameters': {...}}}), got " + type(tool).__name__ + "; for a Python "
                "function, build its schema with transformers.utils.get_json_schema")
    return list(tools)


def _documents(documents: Sequence[Any]) -> list[Any]:
    for document in documents:
        if not isinstance(document, Mapping):
            raise InvalidInputError("documents are dicts with 'title' and 'text' keys, got "
                                    f"{type(document).__name__}")
    return list(documents)


def _as_data(value: Any) -> Any:
    """Message objects as dicts (pydantic models, dataclasses), recursively; other values as they are."""
    if isinstance(value, Mapping):
        return {key: _as_data(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_data(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_as_data(item) for item in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {item.name: _as_data(getattr(value, item.name)) for item in dataclasses.fields(value)}
    if callable(getattr(value, "model_dump", None)):
        return _as_data(value.model_dump())
    return value


def _plain(value: Any) -> Any:
    """``value`` rebuilt from plain JSON-like types only, for the sandbox.

    Objects with methods the sandbox does not know to be dangerous (arrays, images, enum members) never
    reach a template: subclasses of str/int/float become the base type, numpy scalars their Python value,
    and anything else a placeholder naming its type (``"<ndarray>"``), as transformers does.
    """
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, Mapping):
        return {_plain(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_plain(item) for item in value)
    if isinstance(value, np.generic):  # a numpy scalar: np.bool_(False) must stay falsy
        return _plain(value.item())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: _plain(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if callable(getattr(value, "model_dump", None)):
        return _plain(value.model_dump())
    return f"<{type(value).__name__}>"
