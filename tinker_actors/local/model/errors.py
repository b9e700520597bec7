"""Errors of the tiny local model. All are ``ValueError``s: each one is the caller's mistake, so the
local service reports them as user errors."""

from __future__ import annotations


class UnknownBaseModel(ValueError):
    """The requested base model name is not one the local service provides."""


class ContextWindowExceeded(ValueError):
    """A sequence (prompt plus generated tokens, or a training datum) does not fit the context window."""


class InvalidModelInput(ValueError):
    """A datum, loss input, loss config or sampling parameter is malformed (shape, range, value)."""


class IncompatibleCheckpoint(ValueError):
    """Saved LoRA state arrays do not match the model they are being loaded into, or are malformed."""
