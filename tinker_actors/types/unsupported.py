"""Settings of the official SDK 0.38 that the types here hold but tinker-actors does not implement yet.

The request types carry every field of their 0.38 twins, with the official defaults, so 0.38 code builds
them unchanged. A field whose feature is not built must not be sent to a server that would act on it
while we cannot read the answer, nor dropped silently: a request built with a value that asks for such a
feature raises :class:`~tinker_actors.errors.UnsupportedFeatureError` at construction, before anything
goes on the wire. Leaving the field at its default (or at a value that asks for nothing new) is fine.

:data:`NOT_SUPPORTED_YET` is the one list. When a feature is built, delete its line (and the matching
case in ``tests/types/test_types_038.py``); nothing else refers to the individual entries.

Values are checked as given, before pydantic converts them, so the typed error wins over a validation
error (a setting the type cannot hold yet is refused as a feature, not as a wrong type).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tinker_actors.errors import UnsupportedFeatureError

__all__ = ["NOT_SUPPORTED_YET", "NotBuilt", "feature_in_words", "refuse_not_built"]


@dataclass(frozen=True, slots=True)
class NotBuilt:
    """One field of one request type: what setting it asks for, and how to leave it."""

    feature: str
    """What a value that asks for it would turn on, in words."""
    leave: str
    """The values that ask for nothing new, as the user should write them."""
    asks: Callable[[Any], bool]
    """Whether a given (not yet validated) value asks for the feature."""


def _nonzero(value: Any) -> bool:
    return value is not None and value != 0


def _kind_of(value: Any) -> Any:
    """The ``type`` of an optimizer setting given as a model or as a dict (None: no ``type``, i.e. Adam's
    ``AdamParams``)."""
    if isinstance(value, Mapping):
        return value.get("type")
    return getattr(value, "type", None)


def _not_adam(value: Any) -> bool:
    return value is not None and _kind_of(value) not in (None, "adamw", "adam")


def _one_of(*values: str) -> Callable[[Any], bool]:
    return lambda value: value in values


def _not(*values: str) -> Callable[[Any], bool]:
    return lambda value: value not in values


NOT_SUPPORTED_YET: dict[str, dict[str, NotBuilt]] = {
    "CreateModelRequest": {
        "optimizer_config": NotBuilt("an optimizer other than Adam(W)", "AdamOptimizerConfig()", _not_adam),
    },
    "OptimStepRequest": {
        "optim_params": NotBuilt("an optimizer step other than Adam's", "AdamParams(...)", _not_adam),
    },
    "ForwardBackwardInput": {
        "loss_fn": NotBuilt("server-side custom losses",
                            "one of cross_entropy, importance_sampling, ppo, cispo, dro, gspo, stable_reinforce",
                            _one_of("custom")),
    },
    "ModelInput": {
        "chunks": NotBuilt("audio (DmelChunk) model inputs", "text and image chunks",
                           lambda chunks: isinstance(chunks, list | tuple) and any(
                               _kind_of(chunk) == "dmel" for chunk in chunks)),
    },
}
"""``{request type name: {field: NotBuilt}}``: the 0.38 settings refused until their feature is built."""


def refuse_not_built(type_name: str, values: Mapping[str, Any]) -> None:
    """Raise :class:`UnsupportedFeatureError` if ``values`` (a request's fields, as given) ask for a feature
    of :data:`NOT_SUPPORTED_YET`; the first such field is named."""
    fields = NOT_SUPPORTED_YET.get(type_name)
    if not fields:
        return
    for name, not_built in fields.items():
        if name in values and not_built.asks(values[name]):
            raise UnsupportedFeatureError(
                f"{type_name}.{name} asks for {not_built.feature}: not supported yet by tinker-actors "
                f"(leave {name} at {not_built.leave}; see 'Coming from the official SDK 0.38' in "
                f"docs/porting-from-official-sdk.md)", feature=f"{type_name}.{name}")


def feature_in_words(feature: str) -> str:
    """What an :class:`UnsupportedFeatureError`'s ``feature`` (``"Type.field"``) turns on, in words (the
    local service answers with it: a server does not point its callers at a client's porting guide)."""
    type_name, _, name = feature.partition(".")
    not_built = NOT_SUPPORTED_YET.get(type_name, {}).get(name)
    return not_built.feature if not_built is not None else feature
