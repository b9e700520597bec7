"""Provenance spans (protocol 0.38): where a datum's tokens came from, for the losses that need it.

A datum's ``model_input_spans`` tile its input tokens, and its ``loss_fn_input_spans`` tile
``loss_fn_inputs["target_tokens"]``, with consecutive runs: each run says that its positions are
positions ``[offset, offset + length)`` of a sampled sequence's prompt (:class:`PromptProvenanceSpan`) or of
its sampled tokens (:class:`SampledProvenanceSpan`), the sequence named by its ``sequence_id``
(``SampledSequence.sequence_id``). Attach them with ``Datum.with_provenance``.

The official 0.38 names and checks: a non-empty ``sequence_id``, ``offset`` and ``length`` not negative; a
span that breaks one raises :class:`~tinker_actors.errors.InvalidInputError` (a ``ValueError``, as the official
types raise). What the spans are for is the server's business: the Tinker service's ``stable_reinforce`` reads
them with the stability information its sampler recorded (``record_stability_info``); protocol 0.38 carries
them in the protobuf ``forward_backward`` (0.6.3 cannot: refused there before sending).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

import pydantic
from pydantic import Field

from tinker_actors.errors import InvalidInputError
from tinker_actors.types._base import RequestModel, problems_of

__all__ = ["PromptProvenanceSpan", "ProvenanceSpans", "SampledProvenanceSpan"]


class _Span(RequestModel):
    """The fields and checks both kinds of run share."""

    sequence_id: str = Field(min_length=1)
    offset: int = Field(default=0, ge=0)
    length: int = Field(ge=0)

    if not TYPE_CHECKING:  # keeps the typed constructor the pydantic mypy plugin writes
        def __init__(self, /, **data: Any) -> None:
            try:
                super().__init__(**data)
            except pydantic.ValidationError as invalid:
                raise InvalidInputError(f"invalid {type(self).__name__}: {problems_of(invalid)}") from None


class PromptProvenanceSpan(_Span):
    """A run of tokens that were part of a sampling request's prompt."""

    sequence_id: str = Field(min_length=1)
    """The ``sequence_id`` of a sequence sampled from a request whose prompt held this run."""
    offset: int = Field(default=0, ge=0)
    """Where the run starts in that prompt."""
    length: int = Field(ge=0)
    """How many consecutive tokens the run covers."""


class SampledProvenanceSpan(_Span):
    """A run of tokens that one sampled sequence produced (two sequences back to back are two runs)."""

    sequence_id: str = Field(min_length=1)
    """The ``sequence_id`` of the sequence this run reproduces."""
    offset: int = Field(default=0, ge=0)
    """Where the run starts in that sequence's sampled tokens."""
    length: int = Field(ge=0)
    """How many tokens the run covers."""


ProvenanceSpans: TypeAlias = list[PromptProvenanceSpan | SampledProvenanceSpan]
"""Consecutive runs tiling one field of a Datum (see ``Datum.with_provenance``)."""
