"""Provenance spans (protocol 0.38): where a datum's tokens came from, for the losses that need it.

A datum's ``model_input_spans`` tile its input tokens, and its ``loss_fn_input_spans`` tile
``loss_fn_inputs["target_tokens"]``, with consecutive runs: each run says that its positions are
positions ``[offset, offset + length)`` of a sampled sequence's prompt (:class:`PromptProvenanceSpan`) or of
its sampled tokens (:class:`SampledProvenanceSpan`), the sequence named by its ``sequence_id``
(``SampledSequence.sequence_id``). Attach them with ``Datum.with_provenance``.

The official 0.38 names and checks (a non-empty ``sequence_id``, ``offset`` and ``length`` not negative).
Not supported yet by tinker-actors: a datum that carries spans is refused (``types/unsupported.py``).
"""

from __future__ import annotations

from typing import TypeAlias

from pydantic import Field

from tinker_actors.types._base import RequestModel

__all__ = ["PromptProvenanceSpan", "ProvenanceSpans", "SampledProvenanceSpan"]


class PromptProvenanceSpan(RequestModel):
    """A run of tokens that were part of a sampling request's prompt."""

    sequence_id: str = Field(min_length=1)
    """The ``sequence_id`` of a sequence sampled from a request whose prompt held this run."""
    offset: int = Field(default=0, ge=0)
    """Where the run starts in that prompt."""
    length: int = Field(ge=0)
    """How many consecutive tokens the run covers."""


class SampledProvenanceSpan(RequestModel):
    """A run of tokens that one sampled sequence produced (two sequences back to back are two runs)."""

    sequence_id: str = Field(min_length=1)
    """The ``sequence_id`` of the sequence this run reproduces."""
    offset: int = Field(default=0, ge=0)
    """Where the run starts in that sequence's sampled tokens."""
    length: int = Field(ge=0)
    """How many tokens the run covers."""


ProvenanceSpans: TypeAlias = list[PromptProvenanceSpan | SampledProvenanceSpan]
"""Consecutive runs tiling one field of a Datum (see ``Datum.with_provenance``)."""
